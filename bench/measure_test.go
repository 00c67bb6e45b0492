package bench

import (
	"math"
	"slices"
	"time"
)

// bcStats are the receiving side's figures of one scenario's broadcasts, from tgemu's record
// of every accepted sendMessage.
type bcStats struct {
	expected   int // recipients of all broadcasts (contacts listed before creating them)
	delivered  int // distinct recipients that received their bot's broadcast text
	messages   int // messages carrying a broadcast text, duplicates included
	duplicates int // messages beyond the first to the same chat
	strays     int // broadcast messages to a chat that was not a recipient
	losses     int // recipients that never received it
	first      time.Time
	last       time.Time
	// lags are, sorted, each message's arrival minus its due time: the k-th message of a
	// bot (k from 0, in arrival order) is due floor(k/pace) seconds after its broadcast was
	// requested, the earliest Telegram's per-bot limit (pace messages in any 1-second
	// window) lets it arrive. Empty when pace is 0.
	lags []time.Duration
	// activeBots is the median number of distinct bots with an arrival in each whole
	// second between the first and the last arrival.
	activeBots int
}

// span is the time between the first and the last broadcast arrival.
func (s bcStats) span() time.Duration {
	if s.first.IsZero() {
		return 0
	}
	return s.last.Sub(s.first)
}

// rate is messages per second of span (duplicates excluded).
func (s bcStats) rate() float64 {
	if s.delivered < 2 {
		return 0
	}
	return rate(s.delivered-1, s.span()) // n arrivals span n-1 intervals
}

// analyzeBroadcasts reads tgemu's sent messages of every bot and computes bcStats. pace is
// the per-bot rate that defines due times for the latency (0: no latency).
func (p *platform) analyzeBroadcasts(bots []*fleetBot, pace float64) bcStats {
	var s bcStats
	type arrival struct {
		at  time.Time
		bot int
	}
	var all []arrival
	for _, fb := range bots {
		want := make(map[int64]bool, len(fb.contacts))
		for _, c := range fb.contacts {
			want[c.TelegramChatID] = true
		}
		s.expected += len(fb.contacts)
		if fb.bcText == "" {
			s.losses += len(fb.contacts)
			continue
		}
		got := map[int64]int{}
		var ats []time.Time
		for _, m := range p.emu.Sent(fb.tg.ID) {
			if m.Text != fb.bcText {
				continue
			}
			s.messages++
			got[m.ChatID]++
			if !want[m.ChatID] {
				s.strays++
			}
			ats = append(ats, m.At)
			all = append(all, arrival{m.At, fb.idx})
		}
		for chat, n := range got {
			if want[chat] {
				s.delivered++
			}
			s.duplicates += n - 1
		}
		for chat := range want {
			if got[chat] == 0 {
				s.losses++
			}
		}
		if pace > 0 {
			slices.SortFunc(ats, func(a, b time.Time) int { return a.Compare(b) })
			for k, at := range ats {
				due := fb.bcRequest.Add(time.Duration(math.Floor(float64(k)/pace)) * time.Second)
				s.lags = append(s.lags, at.Sub(due))
			}
		}
	}
	slices.Sort(s.lags)
	if len(all) == 0 {
		return s
	}
	slices.SortFunc(all, func(a, b arrival) int { return a.at.Compare(b.at) })
	s.first, s.last = all[0].at, all[len(all)-1].at
	// Distinct bots per whole second; the last, partial second is left out.
	var perSecond []int
	bucket, seen := 0, map[int]bool{}
	for _, a := range all {
		sec := int(a.at.Sub(s.first) / time.Second)
		for sec > bucket {
			perSecond = append(perSecond, len(seen))
			seen = map[int]bool{}
			bucket++
		}
		seen[a.bot] = true
	}
	if len(perSecond) == 0 {
		perSecond = append(perSecond, len(seen))
	}
	slices.Sort(perSecond)
	s.activeBots = percentile(perSecond, 0.5)
	return s
}

// welcomeLatencies are, sorted, for every chat that received a message before the
// broadcast, the time from tgemu's first post of that chat's update to the reply's arrival;
// chats is how many chats got one, last when the last of them arrived.
func (p *platform) welcomeLatencies(bots []*fleetBot) (lat []time.Duration, chats int, last time.Time) {
	for _, fb := range bots {
		seen := map[int64]bool{}
		for _, m := range p.emu.Sent(fb.tg.ID) {
			if seen[m.ChatID] {
				continue
			}
			seen[m.ChatID] = true
			chats++
			if m.At.After(last) {
				last = m.At
			}
			if t0, ok := p.hooks.first(fb.hookURL, m.ChatID); ok {
				lat = append(lat, m.At.Sub(t0))
			}
		}
	}
	return sortedDurations(lat), chats, last
}
