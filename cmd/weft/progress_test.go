package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weft-ml/weft/internal/testshared"
)

// fakeClock returns a clock that reads t0 and then whatever *now is set to.
func fakeClock(now *time.Time) func() time.Time { return func() time.Time { return *now } }

func TestMeter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := meter{start: t0}
	// Nothing is said before minDraw, whatever the bytes: a first tick 1 ms into the work
	// with 1 GiB done would otherwise claim 1 TiB/s.
	for _, el := range []time.Duration{0, time.Millisecond, 200 * time.Millisecond, minDraw - 1} {
		if _, _, ok := m.estimate(t0.Add(el), 1<<30, 4<<30); ok {
			t.Errorf("estimate at %v: ok before minDraw", el)
		}
	}
	if _, _, ok := m.estimate(t0.Add(time.Second), 0, 100); ok {
		t.Error("estimate with nothing done: ok")
	}
	// 1 GiB in 2 s: 512 MiB/s, 3 GiB left: 6 s.
	rate, left, ok := m.estimate(t0.Add(2*time.Second), 1<<30, 4<<30)
	if !ok || rate != 512<<20 || left != 6*time.Second {
		t.Errorf("estimate: %v B/s, %v left, %v", rate, left, ok)
	}
	// The rate is the mean since the start of the work, not since the first estimate.
	rate, _, _ = m.estimate(t0.Add(10*time.Second), 1<<30, 4<<30)
	if rate != float64(1<<30)/10 {
		t.Errorf("rate %v", rate)
	}
	if _, left, _ := m.estimate(t0.Add(time.Second), 5, 5); left != 0 {
		t.Errorf("time left when done: %v", left)
	}
}

func TestProgressBar(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	var errb bytes.Buffer
	e := &env{stderr: &errb, tty: true, clock: fakeClock(&now)}
	if e.newProgress("writing", true) != nil {
		t.Fatal("--quiet draws a bar")
	}
	if (&env{stderr: &errb}).newProgress("writing", false) != nil {
		t.Fatal("a bar without a terminal")
	}
	p := e.newProgress("writing", false)
	now = t0.Add(200 * time.Millisecond)
	p.update(900<<20, 1<<30) // the first tick: nothing drawn yet
	if errb.Len() != 0 {
		t.Fatalf("drawn before %v: %q", minDraw, errb.String())
	}
	last := func() string { // the last frame drawn
		s := errb.String()
		return s[strings.LastIndexByte(s, '\r')+1:]
	}
	now = t0.Add(time.Second)
	p.update(100<<20, 1<<30)
	if out := last(); !strings.Contains(out, "writing 100.0 MiB of 1.0 GiB, 100.0 MiB/s, 9s left") || !strings.Contains(out, " 9% |") {
		t.Fatalf("bar %q", errb.String())
	}
	// Not drawn again within drawEvery.
	n := errb.Len()
	now = now.Add(drawEvery / 2)
	p.update(150<<20, 1<<30)
	if errb.Len() != n {
		t.Fatalf("drawn again after %v: %q", drawEvery/2, errb.String()[n:])
	}
	// The total may change (a scan that learns it needs fewer passes).
	now = t0.Add(2 * time.Second)
	p.update(400<<20, 600<<20)
	if out := last(); !strings.Contains(out, "400.0 MiB of 600.0 MiB, 200.0 MiB/s, 1s left") || !strings.Contains(out, " 66% |") {
		t.Fatalf("bar after a new total %q", errb.String())
	}
	p.finish()
	var nilBar *progress
	nilBar.update(1, 2) // a nil bar does nothing
	nilBar.finish()
	if nilBar.fn() != nil {
		t.Fatal("a nil bar has a callback")
	}
	if roundLeft(93*time.Minute+20*time.Second) != 93*time.Minute || roundLeft(1500*time.Millisecond) != 2*time.Second {
		t.Fatal("roundLeft")
	}
}

// TestQuietEveryReader: the commands that read tensor data for a while (diff, tokens scan,
// verify) draw a bar on a terminal, and --quiet stops it, as it does for every writer.
func TestQuietEveryReader(t *testing.T) {
	gg := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	tu := testshared.Testdata(t, "gguf/micro-tuned-f16.gguf")
	for _, c := range []struct {
		args []string
		what string
	}{
		{[]string{"diff", gg, tu}, "comparing"},
		{[]string{"tokens", "scan", gg}, "scanning"},
		{[]string{"verify", gg}, "reading"},
	} {
		for _, quiet := range []bool{false, true} {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var errb, outb bytes.Buffer
			e := &env{stdout: &outb, stderr: &errb, tty: true, clock: func() time.Time {
				now = now.Add(time.Second) // every tick a second later: every tick draws
				return now
			}}
			args := c.args[1:]
			if quiet {
				args = append(append([]string(nil), args...), "--quiet")
			}
			if err := findCommand(c.args[0]).execute(context.Background(), e, args); err != nil {
				t.Fatalf("%v (quiet %v): %v", c.args, quiet, err)
			}
			drew := strings.Contains(errb.String(), c.what)
			if drew == quiet {
				t.Errorf("%v, --quiet %v: stderr %q", c.args[:1], quiet, errb.String())
			}
		}
	}
}
