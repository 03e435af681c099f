package ckpt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Temporary names record the process that writes them, so that a later run can tell a
// leftover of a killed run (whose owner is gone) from the work of a live one:
//
//	.NAME.weft-tmp-PID-START-BOOT-RAND
//
// PID is the writer's process id; START its start time (Linux: field 22 of /proc/PID/stat,
// clock ticks since boot; 0 where unknown), which tells a reused pid from the writer; BOOT
// the first 8 hex digits of the kernel's boot id (/proc/sys/kernel/random/boot_id; "0" where
// unknown), which tells a pid of an earlier boot; RAND 12 random hex digits. Elsewhere than
// Linux only the pid is known, and a process with that pid, whoever it is, counts as the
// owner: a leftover is then kept a little too long, never removed too early.
const tempMarker = ".weft-tmp-"

// owner identifies a writing process.
type owner struct {
	pid   int
	start uint64 // 0: unknown
	boot  string // "0": unknown
}

var (
	selfOnce sync.Once
	self     owner
)

// thisProcess returns the owner fields of the running process.
func thisProcess() owner {
	selfOnce.Do(func() {
		self = owner{pid: os.Getpid(), boot: bootID()}
		self.start, _ = procStart(self.pid)
	})
	return self
}

func (o owner) String() string { return fmt.Sprintf("%d-%d-%s", o.pid, o.start, o.boot) }

// bootID returns the first 8 hex digits of the boot id, or "0".
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "0"
	}
	id := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	if len(id) < 8 {
		return "0"
	}
	return strings.ToLower(id[:8])
}

// procStart returns a process's start time in clock ticks since boot, from /proc.
func procStart(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces and parentheses:
	// the fields after it start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// alive reports whether the process that wrote a temporary name may still be running. It
// errs on the side of alive: only a pid that does not exist, a pid whose start time is not
// the recorded one, or a record from another boot counts as gone.
func (o owner) alive() bool {
	me := thisProcess()
	if o.boot != "0" && me.boot != "0" && o.boot != me.boot {
		return false
	}
	if !pidExists(o.pid) {
		return false
	}
	if o.start != 0 {
		if s, ok := procStart(o.pid); ok && s != o.start {
			return false // the pid was reused
		}
	}
	return true
}

// tempName returns a fresh temporary name beside final, owned by this process.
func tempName(final string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+tempMarker+thisProcess().String()+"-"+hex.EncodeToString(b[:]))
}

// parseTemp splits a directory entry named like a temporary file into the final name it
// stands for and its owner. known is false for a temporary name of an older weft that
// recorded no owner (.NAME.weft-tmp-RAND). ok is false for names that are not weft's
// temporary names at all.
func parseTemp(entry string) (final string, o owner, known, ok bool) {
	if !strings.HasPrefix(entry, ".") {
		return "", owner{}, false, false
	}
	i := strings.LastIndex(entry, tempMarker)
	if i <= 1 {
		return "", owner{}, false, false
	}
	final = entry[1:i]
	f := strings.Split(entry[i+len(tempMarker):], "-")
	if len(f) == 1 && isHex(f[0]) && len(f[0]) == 12 {
		return final, owner{}, false, true
	}
	if len(f) != 4 || !isHex(f[3]) || len(f[3]) != 12 || !isHex(f[2]) {
		return "", owner{}, false, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return "", owner{}, false, false
	}
	return final, owner{pid: pid, start: start, boot: f[2]}, true, true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
