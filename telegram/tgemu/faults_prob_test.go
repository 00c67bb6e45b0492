package tgemu

import "testing"

// TestFaultProbability checks that a fault with Probability p faults about p of the matching
// calls, that a call it leaves alone falls through to the next fault, and that Times counts
// only faulted calls.
func TestFaultProbability(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	info := s.CreateBot("prob_bot", "Prob")
	b := s.bot(info.ID)
	s.AddFault(info.ID, Fault{Kind: FaultServerError, Probability: 0.5})
	s.AddFault(info.ID, Fault{Kind: FaultBlocked, Times: 3})
	const n = 4000
	var server, blocked, none int
	for range n {
		f, hit := b.takeFault("sendMessage", "1")
		switch {
		case !hit:
			none++
		case f.Kind == FaultServerError:
			server++
		case f.Kind == FaultBlocked:
			blocked++
		}
	}
	if server < n*45/100 || server > n*55/100 {
		t.Errorf("server errors %d of %d, want about half", server, n)
	}
	if blocked != 3 || none != n-server-3 {
		t.Errorf("blocked %d (want 3), unfaulted %d", blocked, none)
	}
}
