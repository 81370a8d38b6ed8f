package bench

import (
	"context"
	"errors"
)

// fakeTarget is a Target with no system behind it: its producers
// acknowledge each record inside Send, except the records lose picks,
// whose acknowledgement never comes. It has no readers (produce runs
// only).
type fakeTarget struct {
	// lose, when set, gets each record's number in its producer (from
	// 0); true loses that record's acknowledgement.
	lose func(n int) bool
	// onClose, when set, runs in Close.
	onClose func()
}

func (t *fakeTarget) Info() TargetInfo                        { return TargetInfo{System: "fake", Setting: "instant"} }
func (t *fakeTarget) ConsumerKinds() []string                 { return nil }
func (t *fakeTarget) Prepare(context.Context, Workload) error { return nil }

func (t *fakeTarget) NewProducer(_ context.Context, _ int, onAck AckFunc) (Producer, error) {
	return &fakeProducer{onAck: onAck, lose: t.lose}, nil
}

func (t *fakeTarget) NewReader(context.Context, string, int, int) (Reader, error) {
	return nil, errors.New("fake target: no readers")
}

func (t *fakeTarget) Close() error {
	if t.onClose != nil {
		t.onClose()
	}
	return nil
}

type fakeProducer struct {
	onAck AckFunc
	lose  func(n int) bool
	sent  int
}

func (p *fakeProducer) Send(_ int, payload []byte) error {
	n := p.sent
	p.sent++
	if p.lose == nil || !p.lose(n) {
		p.onAck(payload, nil)
	}
	return nil
}

func (p *fakeProducer) Flush(context.Context) error { return nil }
func (p *fakeProducer) Close() error                { return nil }
