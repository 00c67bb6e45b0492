package contacts

// Notification preferences (issue 9): a tenant's topics and the contacts' opt-outs.
// A contact is subscribed to every topic of its tenant unless a row of
// contact_topic_unsubscriptions says otherwise (migration 20261202170300).

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/validate"
)

// Topic limits.
const (
	// MaxTopics is the most topics a tenant may have: one /settings button per topic, one
	// per row, within Telegram's keyboard (and ours: telegram.MaxKeyboardButtons = 100).
	MaxTopics = 50
	// MaxTopicDescription is the longest topic description, in characters.
	MaxTopicDescription = 500
)

// topicNameRe is a topic name: 1-64 of a-z, 0-9, '_' and '-'.
var topicNameRe = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// Topic errors.
var (
	ErrTopicNotFound = apperr.NotFound("topic_not_found", "topic not found")
	ErrTopicExists   = apperr.Conflict("topic_exists", "a topic with this name exists")
	ErrTooManyTopics = apperr.Invalid("too_many_topics", fmt.Sprintf("a tenant has at most %d topics", MaxTopics))
)

// Topic is a notification topic of a tenant (table topics).
type Topic struct {
	bun.BaseModel `bun:"table:topics,alias:t"`

	ID          uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID    uuid.UUID `bun:",type:uuid,notnull"`
	Name        string    `bun:",notnull"`
	Description string    `bun:",notnull"`
	CreatedAt   time.Time `bun:",nullzero,notnull,default:current_timestamp"`
}

// TopicPreference is one topic and whether a contact is subscribed to it.
type TopicPreference struct {
	Topic      Topic
	Subscribed bool
}

// CheckTopicName validates a topic name given in field: 1-64 of [a-z0-9_-] (422
// invalid_field).
func CheckTopicName(field, name string) error {
	if !topicNameRe.MatchString(name) {
		return validate.Field(field, "%s must be 1-64 characters of a-z, 0-9, '_' and '-'", field)
	}
	return nil
}

// ListTopics returns the tenant's topics by name.
func (s *Service) ListTopics(ctx context.Context, tenantID uuid.UUID) ([]Topic, error) {
	ts := []Topic{}
	if err := s.db.NewSelect().Model(&ts).Where("t.tenant_id = ?", tenantID).OrderExpr("t.name").Scan(ctx); err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("list topics: %w", err))
	}
	return ts, nil
}

// CreateTopic creates a topic. Errors: invalid_field name or description (422),
// ErrTooManyTopics (422), ErrTopicExists (409).
func (s *Service) CreateTopic(ctx context.Context, tenantID uuid.UUID, name, description string) (Topic, error) {
	if err := CheckTopicName("name", name); err != nil {
		return Topic{}, err
	}
	if err := validate.OptionalText("description", description, MaxTopicDescription); err != nil {
		return Topic{}, err
	}
	t := Topic{TenantID: tenantID, Name: name, Description: description}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Serialise creations of one tenant so that the cap holds.
		if _, err := tx.NewRaw("SELECT pg_advisory_xact_lock(hashtext('topics:' || ?::text))", tenantID.String()).Exec(ctx); err != nil {
			return err
		}
		n, err := tx.NewSelect().Model((*Topic)(nil)).Where("tenant_id = ?", tenantID).Count(ctx)
		if err != nil {
			return err
		}
		if n >= MaxTopics {
			return ErrTooManyTopics
		}
		_, err = tx.NewInsert().Model(&t).Returning("*").Exec(ctx)
		return err
	})
	if database.IsUniqueViolation(err) {
		return Topic{}, ErrTopicExists
	}
	if err != nil {
		return Topic{}, apperr.Classify(fmt.Errorf("create topic: %w", err))
	}
	return t, nil
}

// DeleteTopic deletes the tenant's topic name and every opt-out of it (ON DELETE CASCADE).
// Broadcasts that named it keep the name; recipients already written stay as they are.
// Errors: ErrTopicNotFound.
func (s *Service) DeleteTopic(ctx context.Context, tenantID uuid.UUID, name string) error {
	res, err := s.db.NewDelete().Model((*Topic)(nil)).Where("tenant_id = ?", tenantID).Where("name = ?", name).Exec(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("delete topic: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrTopicNotFound
	}
	return nil
}

// TopicByName returns the tenant's topic name. Errors: invalid_field field (422) when there
// is no such topic (or the name is malformed).
func TopicByName(ctx context.Context, idb bun.IDB, tenantID uuid.UUID, field, name string) (Topic, error) {
	if err := CheckTopicName(field, name); err != nil {
		return Topic{}, err
	}
	var t Topic
	err := idb.NewSelect().Model(&t).Where("t.tenant_id = ?", tenantID).Where("t.name = ?", name).Scan(ctx)
	if database.IsNoRows(err) {
		return Topic{}, validate.Field(field, "%s: no topic named %q (GET /topics/)", field, name)
	}
	if err != nil {
		return Topic{}, apperr.Classify(fmt.Errorf("get topic: %w", err))
	}
	return t, nil
}

// Unsubscribed reports whether contact contactID opted out of the tenant's topic name.
// Errors: invalid_field field (422) for an unknown topic.
func (s *Service) Unsubscribed(ctx context.Context, tenantID, contactID uuid.UUID, field, name string) (bool, error) {
	t, err := TopicByName(ctx, s.db, tenantID, field, name)
	if err != nil {
		return false, err
	}
	ok, err := s.db.NewSelect().Table("contact_topic_unsubscriptions").
		Where("contact_id = ?", contactID).Where("topic_id = ?", t.ID).Exists(ctx)
	if err != nil {
		return false, apperr.Classify(fmt.Errorf("read unsubscription: %w", err))
	}
	return ok, nil
}

// TopicPreferences returns every topic of the tenant, by name, with whether contact
// contactID is subscribed to it, on idb. It does not check that the contact exists.
func (s *Service) TopicPreferences(ctx context.Context, idb bun.IDB, tenantID, contactID uuid.UUID) ([]TopicPreference, error) {
	var rows []struct {
		Topic
		Unsubscribed bool `bun:"unsubscribed"`
	}
	err := idb.NewRaw(`SELECT t.id, t.tenant_id, t.name, t.description, t.created_at,
	EXISTS (SELECT 1 FROM contact_topic_unsubscriptions u WHERE u.contact_id = ? AND u.topic_id = t.id) AS unsubscribed
FROM topics t WHERE t.tenant_id = ? ORDER BY t.name`, contactID, tenantID).Scan(ctx, &rows)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("read preferences: %w", err))
	}
	out := make([]TopicPreference, 0, len(rows))
	for _, r := range rows {
		out = append(out, TopicPreference{Topic: r.Topic, Subscribed: !r.Unsubscribed})
	}
	return out, nil
}

// ContactTopics returns the preferences of the tenant's contact id (TopicPreferences).
// Errors: ErrNotFound (also another tenant's contact).
func (s *Service) ContactTopics(ctx context.Context, tenantID, id uuid.UUID) ([]TopicPreference, error) {
	if err := s.contactExists(ctx, s.db, tenantID, id); err != nil {
		return nil, err
	}
	return s.TopicPreferences(ctx, s.db, tenantID, id)
}

// SetContactTopics sets the subscriptions of the tenant's contact id given in set (topic
// name → subscribed; topics not named keep their state) in one transaction and returns all
// its preferences. Errors: ErrNotFound (404), invalid_field naming the topic (422) for a
// name that is not one of the tenant's topics.
func (s *Service) SetContactTopics(ctx context.Context, tenantID, id uuid.UUID, set map[string]bool) ([]TopicPreference, error) {
	var out []TopicPreference
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := s.contactExists(ctx, tx, tenantID, id); err != nil {
			return err
		}
		prefs, err := s.TopicPreferences(ctx, tx, tenantID, id)
		if err != nil {
			return err
		}
		byName := make(map[string]uuid.UUID, len(prefs))
		for _, p := range prefs {
			byName[p.Topic.Name] = p.Topic.ID
		}
		var off, on []uuid.UUID
		for name, sub := range set {
			tid, ok := byName[name]
			if !ok {
				return validate.Field(name, "%q is not a topic of this tenant (GET /topics/)", name)
			}
			if sub {
				on = append(on, tid)
			} else {
				off = append(off, tid)
			}
		}
		if len(on) > 0 {
			if _, err := tx.NewRaw("DELETE FROM contact_topic_unsubscriptions WHERE contact_id = ? AND topic_id IN (?)", id, bun.List(on)).Exec(ctx); err != nil {
				return err
			}
		}
		if len(off) > 0 {
			if _, err := tx.NewRaw(`INSERT INTO contact_topic_unsubscriptions (contact_id, topic_id)
SELECT ?, unnest(?::uuid[]) ON CONFLICT DO NOTHING`, id, uuidList(off)).Exec(ctx); err != nil {
				return err
			}
		}
		out, err = s.TopicPreferences(ctx, tx, tenantID, id)
		return err
	})
	if err != nil {
		return nil, apperr.Classify(err)
	}
	return out, nil
}

// ToggleTopic flips the subscription of contact contactID (of tenantID) to topic topicID on
// idb and returns the topic's name and the new state. found is false, changing nothing,
// when the tenant has no such topic (deleted since the keyboard was sent).
func (s *Service) ToggleTopic(ctx context.Context, idb bun.IDB, tenantID, contactID, topicID uuid.UUID) (name string, subscribed, found bool, err error) {
	// One statement: delete the opt-out if there is one, else insert it (data-modifying
	// CTEs run to completion whether or not the main query reads them).
	var r struct {
		Name    string `bun:"name"`
		Removed bool   `bun:"removed"`
	}
	err = idb.NewRaw(`WITH t AS (SELECT id, name FROM topics WHERE id = ? AND tenant_id = ?),
del AS (DELETE FROM contact_topic_unsubscriptions u USING t WHERE u.contact_id = ? AND u.topic_id = t.id RETURNING u.topic_id),
ins AS (INSERT INTO contact_topic_unsubscriptions (contact_id, topic_id)
	SELECT ?, t.id FROM t WHERE NOT EXISTS (SELECT 1 FROM del) ON CONFLICT DO NOTHING RETURNING topic_id)
SELECT t.name, EXISTS (SELECT 1 FROM del) AS removed FROM t`,
		topicID, tenantID, contactID, contactID).Scan(ctx, &r)
	if database.IsNoRows(err) {
		return "", false, false, nil
	}
	if err != nil {
		return "", false, false, apperr.Classify(fmt.Errorf("toggle topic: %w", err))
	}
	return r.Name, r.Removed, true, nil
}

// contactExists checks that id is a contact of the tenant. Errors: ErrNotFound.
func (s *Service) contactExists(ctx context.Context, idb bun.IDB, tenantID, id uuid.UUID) error {
	ok, err := idb.NewSelect().Model((*Contact)(nil)).Where("c.tenant_id = ?", tenantID).Where("c.id = ?", id).Exists(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("get contact: %w", err))
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// uuidList is ids as a PostgreSQL uuid[] literal.
func uuidList(ids []uuid.UUID) string {
	b := make([]byte, 0, 2+37*len(ids))
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, id.String()...)
	}
	return string(append(b, '}'))
}
