package ckpt

import (
	"io"
	"os"
	"syscall"

	"github.com/weft-ml/weft"
	"golang.org/x/sys/unix"
)

// fdOf returns the file descriptor under a tensor read from a file (a section of an
// *os.File, or of anything that exposes one), or false.
func fdOf(r io.ReaderAt) (syscall.Conn, bool) {
	if s, ok := r.(*io.SectionReader); ok {
		r, _, _ = s.Outer()
	}
	c, ok := r.(syscall.Conn)
	return c, ok
}

func fadvise(c syscall.Conn, off, n int64, advice int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), off, n, advice) })
}

// adviseSequential tells the kernel that the files the targets' tensors are read from are
// read front to back (a larger read-ahead).
func adviseSequential(targets []*target) {
	seen := map[any]bool{}
	for _, tg := range targets {
		for _, t := range tg.c.Tensors {
			weft.Leaves(t, func(l *weft.Tensor) {
				c, ok := fdOf(l.Data)
				if !ok {
					return
				}
				if k := weft.ReaderKey(c.(io.ReaderAt)); k == nil || seen[k] {
					return
				} else {
					seen[k] = true
				}
				fadvise(c, 0, 0, unix.FADV_SEQUENTIAL)
			})
		}
	}
}

// adviseWritten is called on an output file once it is synced.
func adviseWritten(f *os.File) {}

// startWriteback asks the kernel to start writing f's dirty pages back (without waiting).
func startWriteback(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE) })
}
