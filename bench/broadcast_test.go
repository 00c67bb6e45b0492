package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

// telegramPerBot is Telegram's broadcast limit per bot (core.telegram.org/bots/faq).
const telegramPerBot = 30.0

// bcSpec is a broadcast scenario: 1, 2, 3 and 6.
type bcSpec struct {
	bots, contacts int
	text           string // what each user sends first; "/start" is answered with a welcome
	welcome        bool
	emu            tgemu.Options
	env            map[string]string
	pace           float64 // per-bot pace for latency (0: none)
	rateGoal       float64 // achieved rate goal (0: info only)
	rateGoalText   string
	crash          bool // scenario 6: SIGKILL a worker at half and restart it
	profile        bool // collect a worker CPU profile while broadcasting
}

// idealDuration is how long the broadcasts take at the goal rate (or 30/s per bot).
func (s bcSpec) idealDuration() time.Duration {
	r := s.rateGoal
	if r == 0 {
		r = 0.9 * telegramPerBot * float64(s.bots)
	}
	return time.Duration(float64(s.bots*s.contacts) / r * float64(time.Second))
}

func scenario1(ctx context.Context, r *run) error {
	bots, contacts, err := counts(r, 100, 300)
	if err != nil {
		return err
	}
	r.rep.title(1, fmt.Sprintf("%d bots x %d contacts", bots, contacts))
	goal := 0.9 * min(100000, telegramPerBot*float64(bots))
	spec := bcSpec{bots: bots, contacts: contacts, text: "/start", welcome: true, pace: telegramPerBot,
		rateGoal: goal, rateGoalText: fmt.Sprintf(">= %s (0.9 x %d x 30/s)", perSec(goal), bots), profile: true}
	return r.broadcastScenario(ctx, spec)
}

func scenario2(ctx context.Context, r *run) error {
	contacts, err := r.cfg.count(2, "CONTACTS", 10000, 20)
	if err != nil {
		return err
	}
	r.rep.title(2, fmt.Sprintf("1 bot x %d contacts", contacts))
	spec := bcSpec{bots: 1, contacts: contacts, text: "hello", pace: telegramPerBot,
		rateGoal: 0.9 * telegramPerBot, rateGoalText: ">= 27.0/s (0.9 x 30/s)"}
	return r.broadcastScenario(ctx, spec)
}

func scenario3(ctx context.Context, r *run) error {
	bots, contacts, err := counts(r, 1000, 100)
	if err != nil {
		return err
	}
	r.rep.title(3, fmt.Sprintf("%d bots x %d contacts, limits raised", bots, contacts))
	spec := bcSpec{bots: bots, contacts: contacts, text: "hello",
		emu:      tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1},
		env:      map[string]string{"TELEGRAM_BOT_RATE_LIMIT": "100000/s"},
		rateGoal: 5000, rateGoalText: ">= 5,000/s"}
	return r.broadcastScenario(ctx, spec)
}

func scenario6(ctx context.Context, r *run) error {
	bots, contacts, err := counts(r, 100, 300)
	if err != nil {
		return err
	}
	r.rep.title(6, fmt.Sprintf("crash: %d bots x %d contacts, worker SIGKILLed at half", bots, contacts))
	spec := bcSpec{bots: bots, contacts: contacts, text: "/start", welcome: true, pace: telegramPerBot, crash: true}
	return r.broadcastScenario(ctx, spec)
}

// counts reads BENCH_S<n>_BOTS and BENCH_S<n>_CONTACTS (defaults scaled).
func counts(r *run, bots, contacts int) (int, int, error) {
	b, err := r.cfg.count(r.id, "BOTS", bots, 1)
	if err != nil {
		return 0, 0, err
	}
	c, err := r.cfg.count(r.id, "CONTACTS", contacts, 5)
	return b, c, err
}

// broadcastScenario runs one broadcast scenario: contacts created through the webhook by
// users messaging the bots in tgemu, then one broadcast per bot at once, measured at tgemu.
func (r *run) broadcastScenario(ctx context.Context, s bcSpec) error {
	id, rep := r.id, r.rep
	p, err := r.newPlatform(ctx, platformOpts{emu: s.emu, env: s.env})
	if err != nil {
		return err
	}
	bots, err := p.registerBots(ctx, s.bots, 10)
	if err != nil {
		return err
	}
	makeUsers(bots, s.contacts)

	// Contacts through the webhook.
	want := s.bots * s.contacts
	t0 := time.Now()
	if err := p.userMessages(bots, s.text); err != nil {
		return err
	}
	var have int
	err = p.waitFor(ctx, r.cfg.setupTimeout, func(ctx context.Context) (bool, error) {
		n, err := p.countContacts(ctx)
		have = n
		return n >= want, err
	}, func() {
		r.logf("contacts: %s/%s (%s) from %q", num(have), num(want), perSec(rate(have, time.Since(t0))), s.text)
	})
	took := time.Since(t0)
	switch {
	case errors.Is(err, errTimeout):
		rep.add(id, fmt.Sprintf("contacts from %q via webhook", s.text), "= "+num(want),
			fmt.Sprintf("%s after the %s cap", num(have), secs(r.cfg.setupTimeout)), verdictTimeout)
	case err != nil:
		return err
	default:
		rep.add(id, fmt.Sprintf("contacts from %q via webhook", s.text), "= "+num(want),
			fmt.Sprintf("%s in %s (%s)", num(have), secs(took), perSec(rate(have, took))), verdictPass)
	}
	r.logf("contacts: %s/%s in %s", num(have), num(want), secs(took))
	acks, fails := p.hooks.stats()
	rep.add(id, "webhook answer to tgemu's posts", "-", fmt.Sprintf("p50 %s, p99 %s, %d failed deliveries",
		ms(percentile(acks, 0.5)), ms(percentile(acks, 0.99)), fails), verdictInfo)

	if s.welcome {
		var sent int
		err = p.waitFor(ctx, r.cfg.setupTimeout, func(context.Context) (bool, error) {
			sent = p.sentTotal(bots)
			return sent >= want, nil
		}, func() { r.logf("welcomes: %s/%s (%s)", num(sent), num(want), perSec(rate(sent, time.Since(t0)))) })
		if err != nil && !errors.Is(err, errTimeout) {
			return err
		}
		lat, chats, last := p.welcomeLatencies(bots)
		v := verdictPass
		if errors.Is(err, errTimeout) {
			v = verdictTimeout
		} else if chats != want {
			v = verdictFail
		}
		rep.add(id, "welcome replies (distinct chats)", "= "+num(want),
			fmt.Sprintf("%s, the last %s after the first /start", num(chats), secs(last.Sub(t0))), v)
		rep.add(id, "/start -> welcome latency", "-", fmt.Sprintf("p50 %s, p99 %s (tgemu's post to the reply's arrival)",
			ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))), verdictInfo)
		r.logf("welcomes: %s chats, the last after %s", num(chats), secs(last.Sub(t0)))
	}

	// The broadcasts.
	if err := p.listContacts(ctx, bots); err != nil {
		return err
	}
	expected := 0
	for _, fb := range bots {
		expected += len(fb.contacts)
	}
	v0 := p.emu.TotalViolations()
	tb := time.Now()
	if err := p.createBroadcasts(ctx, bots, 16); err != nil {
		return err
	}
	var creates []time.Duration
	for _, fb := range bots {
		if fb.bcID != "" {
			creates = append(creates, fb.bcAccepted)
		}
	}
	creates = sortedDurations(creates)
	rep.add(id, fmt.Sprintf("POST /broadcast/ x %d (16 at a time)", len(creates)), "-",
		fmt.Sprintf("p50 %s, p99 %s, all in %s", ms(percentile(creates, 0.5)), ms(percentile(creates, 0.99)), secs(time.Since(tb))), verdictInfo)
	r.logf("created %d broadcasts (%s recipients) in %s", len(creates), num(expected), secs(time.Since(tb)))
	if s.profile && r.cfg.profile != "" {
		p.profileCPU(p.workerList()[0], 20*time.Second, fmt.Sprintf("s%d-worker1.cpu.pprof", id))
		defer p.waitProfiles()
	}
	crash := &crashInfo{inFlight: -1, claimed: -1}
	crashCtx, stopCrash := context.WithCancel(ctx)
	crashDone := make(chan struct{})
	defer func() { stopCrash(); <-crashDone }() // no restart after the platform stops
	if s.crash {
		go func() { defer close(crashDone); p.crashAtHalf(crashCtx, bots, expected, crash) }()
	} else {
		close(crashDone)
	}

	timeout := max(2*time.Minute, 5*s.idealDuration())
	if s.crash {
		// Room for a recovery that waits for a stale claim to expire (today: the sweep
		// gives "sending" rows back after 5 min, checked every minute).
		timeout += 7 * time.Minute
	}
	if timeout, err = r.cfg.timeout(id, timeout); err != nil {
		return err
	}
	var (
		delivered int
		open      int
		doneAt    time.Time // when delivered first reached expected
		lastN     int
		lastT     = time.Now()
	)
	err = p.waitFor(ctx, timeout, func(ctx context.Context) (bool, error) {
		delivered = 0
		for _, fb := range bots {
			delivered += p.emu.SentCount(fb.tg.ID) - fb.baseline
		}
		n, err := p.broadcastsOpen(ctx)
		if err != nil {
			return false, err
		}
		open = n
		if delivered >= expected && doneAt.IsZero() {
			doneAt = time.Now()
		}
		// Done when every broadcast is finished, or 30 s after everything arrived (a
		// broadcast not marked completed is then reported, not waited for).
		return open == 0 || (!doneAt.IsZero() && time.Since(doneAt) > 30*time.Second), nil
	}, func() {
		viol := p.emu.TotalViolations()
		r.logf("broadcast: %s/%s delivered (%s now), %d broadcasts open, violations bot %d chat %d",
			num(delivered), num(expected), perSec(rate(delivered-lastN, time.Since(lastT))), open,
			viol.PerBot-v0.PerBot, viol.PerChat-v0.PerChat)
		lastN, lastT = delivered, time.Now()
	})
	stopCrash()
	<-crashDone
	timedOut := errors.Is(err, errTimeout)
	if err != nil && !timedOut {
		return err
	}
	elapsed := time.Since(tb)
	time.Sleep(2 * time.Second) // late duplicates
	st := p.analyzeBroadcasts(bots, s.pace)
	viol := p.emu.TotalViolations()
	vb, vc := viol.PerBot-v0.PerBot, viol.PerChat-v0.PerChat
	r.logf("broadcast: %s/%s delivered, %s, %d duplicates, %d lost, timed out %v", num(st.delivered), num(st.expected),
		perSec(st.rate()), st.duplicates, st.losses, timedOut)
	r.b.ReportMetric(st.rate(), "msg/s")

	completion := fmt.Sprintf("%s of %s in %s", num(st.delivered), num(st.expected), secs(elapsed))
	if timedOut {
		rep.add(id, "broadcasts finished", "-", fmt.Sprintf("timed out after %s: %s", secs(timeout), completion), verdictTimeout)
	} else {
		rep.add(id, "broadcasts finished", "-", completion+fmt.Sprintf(", %d not marked finished", open), verdictInfo)
	}
	measuredRate := fmt.Sprintf("%s (%s msgs over %s)", perSec(st.rate()), num(st.delivered), secs(st.span()))
	if s.rateGoal > 0 {
		rep.check(id, "achieved rate at tgemu", s.rateGoalText, measuredRate, st.rate() >= s.rateGoal)
	} else {
		rep.add(id, "achieved rate at tgemu", "-", measuredRate, verdictInfo)
	}
	if s.emu.PerBotPerSecond >= 0 {
		rep.check(id, "violations at tgemu (429s)", "0", fmt.Sprintf("per bot %d, per chat %d", vb, vc), vb+vc == 0)
	}
	lossText := num(st.losses)
	if timedOut {
		lossText += fmt.Sprintf(" not delivered by the %s cap", secs(timeout))
	}
	lossVerdict := verdictFail
	switch {
	case st.losses == 0:
		lossVerdict = verdictPass
	case timedOut:
		lossVerdict = verdictTimeout // not delivered yet is not proven lost
	}
	if s.crash {
		bound := "-"
		if crash.inFlight >= 0 {
			bound = num(crash.inFlight)
		}
		if crash.at.IsZero() {
			rep.add(id, "worker SIGKILLed at", "half", "never: half was not reached "+crash.err, verdictFail)
		} else {
			rep.add(id, "worker SIGKILLed at", "half", fmt.Sprintf("%s at %s/%s delivered, %s after the broadcasts; restarted 1 s later",
				crash.worker, num(crash.delivered), num(expected), secs(crash.at.Sub(tb))), verdictInfo)
			claimed := "?"
			if crash.claimed >= 0 {
				claimed = num(crash.claimed)
			}
			rep.add(id, "in-flight at the kill", "-", fmt.Sprintf("%s delivered but not recorded as sent; %s recipients in status sending %s",
				bound, claimed, crash.err), verdictInfo)
		}
		rep.add(id, "losses", "0", lossText, lossVerdict)
		rep.check(id, "duplicates", "<= in-flight at the kill ("+bound+")", num(st.duplicates), crash.inFlight >= 0 && st.duplicates <= crash.inFlight)
		if !crash.at.IsZero() && st.last.After(crash.at) {
			rep.add(id, "recovery: kill -> last arrival", "-", secs(st.last.Sub(crash.at)), verdictInfo)
		}
	} else {
		rep.add(id, "losses", "0", lossText, lossVerdict)
		rep.check(id, "duplicates", "0", num(st.duplicates), st.duplicates == 0)
	}
	if st.strays > 0 {
		rep.add(id, "messages to chats not in the audience", "0", num(st.strays), verdictFail)
	}
	if s.pace > 0 {
		rep.add(id, "send latency (arrival - due, 30/s/bot)", "-", fmt.Sprintf("p50 %s, p99 %s", ms(percentile(st.lags, 0.5)),
			ms(percentile(st.lags, 0.99))), verdictInfo)
	}
	rep.add(id, "bots with an arrival per second (median)", "-", fmt.Sprintf("%d of %d", st.activeBots, s.bots), verdictInfo)
	p.waitProfiles() // the peak RSS includes the profiling
	p.reportCPU()
	rep.add(id, "worker peak RSS (VmHWM)", "-", rssList(p.workersPeakRSS()), verdictInfo)
	return nil
}

// crashInfo is what crashAtHalf did.
type crashInfo struct {
	at        time.Time // when the worker was killed (zero: never)
	delivered int       // broadcast messages at tgemu then
	worker    string
	// inFlight is the number of broadcast messages tgemu had accepted when the killed
	// worker was gone whose recipient was not recorded as sent right after: the sends that
	// no record covers, an upper bound of the duplicates a correct engine may make (-1:
	// unknown).
	inFlight int
	claimed  int    // recipients in status sending right after the kill (-1: unknown)
	err      string // what went wrong, if anything
}

// crashAtHalf waits until half of expected broadcast messages have arrived at tgemu, then
// SIGKILLs the worker that has used the most CPU, measures what was in flight (see
// crashInfo), and starts a replacement worker a second later.
func (p *platform) crashAtHalf(ctx context.Context, bots []*fleetBot, expected int, c *crashInfo) {
	for ctx.Err() == nil {
		delivered := 0
		for _, fb := range bots {
			delivered += p.emu.SentCount(fb.tg.ID) - fb.baseline
		}
		if delivered*2 < expected {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		var victim *proc
		for _, w := range p.workerList() {
			if w.alive() && (victim == nil || w.cpuTicks() > victim.cpuTicks()) {
				victim = w
			}
		}
		victim.kill() // returns once the process is gone: it sends nothing more
		c.at, c.delivered, c.worker = time.Now(), delivered, victim.name
		// Snapshot what tgemu accepted, then what the database says was sent. A message the
		// surviving worker sends and records meanwhile is in the second set, not the first.
		accepted := map[string]map[int64]bool{}
		for _, fb := range bots {
			set := map[int64]bool{}
			for _, m := range p.emu.Sent(fb.tg.ID) {
				if m.Text == fb.bcText {
					set[m.ChatID] = true
				}
			}
			accepted[fb.appID] = set
		}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		recorded, err := p.recordedSent(qctx)
		if err == nil {
			c.inFlight = 0
			for app, set := range accepted {
				for chat := range set {
					if !recorded[app][chat] {
						c.inFlight++
					}
				}
			}
			err = p.db.QueryRow(qctx, "SELECT count(*) FROM broadcast_recipients WHERE status = 'sending'").Scan(&c.claimed)
		}
		cancel()
		if err != nil {
			c.err = "(query failed: " + firstLine(err.Error()) + ")"
		}
		p.r.logf("SIGKILLed %s at %s/%s delivered; %d delivered but not recorded, %d recipients in status sending",
			victim.name, num(delivered), num(expected), c.inFlight, c.claimed)
		select {
		case <-ctx.Done():
			c.err += " (not restarted: the scenario ended)"
			return
		case <-time.After(time.Second):
		}
		w, err := p.start("worker")
		if err != nil {
			c.err += " (restart failed: " + err.Error() + ")"
			return
		}
		p.r.logf("restarted: %s", w.name)
		return
	}
}

// recordedSent is, per bot_app_id, the chats of broadcast recipients in status sent.
func (p *platform) recordedSent(ctx context.Context) (map[string]map[int64]bool, error) {
	rows, err := p.db.Query(ctx, `SELECT b.bot_id::text, r.chat_id FROM broadcast_recipients r
		JOIN broadcasts b ON b.id = r.broadcast_id WHERE r.status = 'sent'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[int64]bool{}
	for rows.Next() {
		var app string
		var chat int64
		if err := rows.Scan(&app, &chat); err != nil {
			return nil, err
		}
		if out[app] == nil {
			out[app] = map[int64]bool{}
		}
		out[app][chat] = true
	}
	return out, rows.Err()
}
