package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/weft-ml/weft/internal/text"
)

// Progress bars. Every command that reads or writes tensor data for more than a moment
// draws one bar on stderr when it is a terminal, through progress: the bytes done and in
// all, the rate and the time left. The rate and the time left are weft's own (meter): the
// bar library starts its clock at the first drawing and so shows an absurd rate on the
// first tick when work began earlier (bytes done / a few microseconds); weft's clock starts
// when the work does, and nothing is drawn before minDraw has passed.

// minDraw is how long work runs before a bar is drawn: shorter work shows none, and the
// first rate is measured over at least this long.
const minDraw = 500 * time.Millisecond

// meter estimates the rate and the time left of work that started at start.
type meter struct {
	start time.Time
}

// estimate returns the mean rate since the start (bytes per second) and the time left at
// that rate, and false while nothing can be said yet: before minDraw has passed, or with
// nothing done.
func (m meter) estimate(now time.Time, done, total int64) (rate float64, left time.Duration, ok bool) {
	el := now.Sub(m.start)
	if el < minDraw || done <= 0 {
		return 0, 0, false
	}
	rate = float64(done) / el.Seconds()
	if total > done {
		left = time.Duration(float64(total-done) / rate * float64(time.Second))
	}
	return rate, left, true
}

// progress is one bar. A nil *progress draws nothing.
type progress struct {
	e     *env
	what  string
	clock func() time.Time
	m     meter

	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	max   int64
	drawn time.Time // when the bar was last drawn
}

// drawEvery is the shortest time between two drawings of a bar.
const drawEvery = 200 * time.Millisecond

// newProgress returns a bar for work described by what ("writing", "reading"), starting
// now; nil when stderr is not a terminal or quiet is set.
func (e *env) newProgress(what string, quiet bool) *progress {
	if quiet || !e.tty {
		return nil
	}
	clock := e.clock
	if clock == nil {
		clock = time.Now
	}
	return &progress{e: e, what: what, clock: clock, m: meter{start: clock()}}
}

// update sets the bytes done and in all (which may change); it may be called from any
// goroutine. Nothing is drawn before minDraw.
func (p *progress) update(done, total int64) {
	if p == nil || total <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	rate, left, ok := p.m.estimate(now, done, total)
	if !ok || (done < total && now.Sub(p.drawn) < drawEvery) {
		return
	}
	p.drawn = now
	if p.bar == nil {
		// The library draws only what it is given: weft computes the rate and time left,
		// and decides when to draw.
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.e.stderr),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionShowBytes(false),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30))
		p.max = total
	}
	if total != p.max {
		p.bar.ChangeMax64(total)
		p.max = total
	}
	p.bar.Describe(p.label(done, total, rate, left))
	if done >= total {
		_ = p.bar.Set64(total) // finished: the bar clears itself
		return
	}
	_ = p.bar.Set64(done)
	_ = p.bar.RenderBlank() // with the new description, whether or not Set64 drew

}

// label is the text beside the bar: "writing 1.2 GiB of 4.0 GiB, 310.0 MiB/s, 9s left".
func (p *progress) label(done, total int64, rate float64, left time.Duration) string {
	return fmt.Sprintf("%s %s of %s, %s/s, %s left", p.what, text.Bytes(done), text.Bytes(total), text.Bytes(int64(rate)), roundLeft(left))
}

// roundLeft rounds a time left to what is worth showing: seconds under 10 minutes, minutes
// beyond.
func roundLeft(d time.Duration) time.Duration {
	if d < 10*time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Minute)
}

// finish clears the bar.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// fn returns update as a progress callback, or nil for a nil bar (so that the work need
// not count at all).
func (p *progress) fn() func(done, total int64) {
	if p == nil {
		return nil
	}
	return p.update
}
