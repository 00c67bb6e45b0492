package telegram

import (
	"errors"
	"time"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/metrics"
)

// observeIngest counts an Ingest that failed by outcome (metrics.WebhookUpdates); stored
// and duplicate updates are counted by the group commit (ingestBatcher.flush), which knows
// which rows were new.
func observeIngest(err error) {
	if err == nil {
		return
	}
	outcome := metrics.UpdateUnavailable
	switch {
	case errors.Is(err, ErrBotNotFound):
		outcome = metrics.UpdateBotNotFound
	case errors.Is(err, ErrBadSecret):
		outcome = metrics.UpdateUnauthorized
	case apperr.KindOf(err) == apperr.KindMalformed || apperr.KindOf(err) == apperr.KindInvalid:
		outcome = metrics.UpdateMalformed
	}
	metrics.WebhookUpdates.WithLabelValues(outcome).Inc()
}

// observeDeliver counts one sendMessage call by the Outcome that deliver gives it
// (metrics.Sends): a 429 flood wait, the only OutcomeWait deliver returns, is "429".
func observeDeliver(out Outcome) {
	label := string(out.Status)
	if out.Status == OutcomeWait {
		label = "429"
		metrics.Telegram429.Inc()
	}
	metrics.Sends.WithLabelValues(label).Inc()
}

// observeLag records ev's processing lag, from its storage by the webhook (received_at) to
// now (metrics.UpdateLag). Events read without received_at are not recorded.
func observeLag(ev *WebhookEvent) {
	if !ev.ReceivedAt.IsZero() {
		metrics.UpdateLag.Observe(time.Since(ev.ReceivedAt).Seconds())
	}
}
