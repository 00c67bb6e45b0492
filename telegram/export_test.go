package telegram

// Internals exposed to the telegram_test package.

// IngestStats returns the webhook group commit's counters: INSERT batches, rows in them,
// batches retried row by row.
func (s *Service) IngestStats() (batches, rows, fallbacks int64) {
	b := s.in.ingest
	return b.batches.Load(), b.rows.Load(), b.fallbacks.Load()
}

// BotCacheSubscribed reports whether the bot cache's invalidation subscription is up.
func (s *Service) BotCacheSubscribed() bool {
	return s.in.bots.Subscribed()
}

// WarmBotCache starts the bot cache (and its subscription) without a lookup.
func (s *Service) WarmBotCache() { s.in.bots.Start() }
