package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleRaftConfigurations() []RaftConfiguration {
	return []RaftConfiguration{
		{Voters: []uint64{1}},
		{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
		{Voters: []uint64{1, 4, 5}, OutgoingVoters: []uint64{1, 2, 3}, Learners: []uint64{9}},
	}
}

func TestRaftConfigurationRoundTrip(t *testing.T) {
	for _, c := range sampleRaftConfigurations() {
		b := AppendRaftConfiguration([]byte{0xff}, &c)
		got, err := DecodeRaftConfiguration(b[1:])
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
		if got.Joint() != (len(c.OutgoingVoters) > 0) {
			t.Fatalf("Joint() = %v for %+v", got.Joint(), c)
		}
	}
}

func TestDecodeRaftConfigurationRejectsBrokenRules(t *testing.T) {
	valid := AppendRaftConfiguration(nil, &RaftConfiguration{Voters: []uint64{1, 2}, Learners: []uint64{3}})
	cases := map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{2}, valid[1:]...),
		"truncated":      valid[:len(valid)-1],
		"trailing bytes": append(bytes.Clone(valid), 0),
	}
	// Hand-built payloads the encoder refuses to produce.
	raw := func(voters, outgoing, learners []uint64) []byte {
		b := []byte{1}
		for _, n := range []int{len(voters), len(outgoing), len(learners)} {
			b = append(b, byte(n), 0, 0, 0)
		}
		for _, ids := range [][]uint64{voters, outgoing, learners} {
			for _, id := range ids {
				b = append(b, byte(id), 0, 0, 0, 0, 0, 0, 0)
			}
		}
		return b
	}
	cases["no voters"] = raw(nil, nil, []uint64{1})
	cases["zero id"] = raw([]uint64{0, 1}, nil, nil)
	cases["duplicate"] = raw([]uint64{1, 1}, nil, nil)
	cases["unsorted"] = raw([]uint64{2, 1}, nil, nil)
	cases["learner is voter"] = raw([]uint64{1, 2}, nil, []uint64{2})
	cases["learner is outgoing voter"] = raw([]uint64{1}, []uint64{2}, []uint64{2})
	for name, b := range cases {
		if _, err := DecodeRaftConfiguration(b); !errors.Is(err, ErrCorruptRaftConfiguration) {
			t.Errorf("%s: err = %v, want ErrCorruptRaftConfiguration", name, err)
		}
	}
}

func FuzzDecodeRaftConfiguration(f *testing.F) {
	for _, c := range sampleRaftConfigurations() {
		f.Add(AppendRaftConfiguration(nil, &c))
	}
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeRaftConfiguration(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptRaftConfiguration) {
				t.Fatalf("error does not wrap ErrCorruptRaftConfiguration: %v", err)
			}
			return
		}
		if again := AppendRaftConfiguration(nil, &c); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	})
}
