package api

// Notification preferences (issue 9): the tenant's topics and each contact's
// subscriptions (contacts/topics.go), and the topic of POST /messages/.

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram"
)

// reasonUnsubscribed is the reason of a message suppressed because its contact opted out
// of its topic.
const reasonUnsubscribed = "unsubscribed"

// topicRequest is the body of POST /topics/.
type topicRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// topicResponse is a topic of the tenant.
type topicResponse struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// topicPreferenceResponse is one topic and whether the contact is subscribed to it.
type topicPreferenceResponse struct {
	Name       string `json:"name"`
	Subscribed bool   `json:"subscribed"`
}

// unsubscribedResponse is the 200 of POST /messages/ when the contact opted out of the
// message's topic: nothing was stored or sent.
type unsubscribedResponse struct {
	Suppressed bool   `json:"suppressed"`
	Reason     string `json:"reason"`
}

func toTopicResponse(t contacts.Topic) topicResponse {
	return topicResponse{Name: t.Name, Description: t.Description, CreatedAt: utc(t.CreatedAt)}
}

func toPreferencesResponse(ps []contacts.TopicPreference) map[string][]topicPreferenceResponse {
	items := make([]topicPreferenceResponse, 0, len(ps))
	for _, p := range ps {
		items = append(items, topicPreferenceResponse{Name: p.Topic.Name, Subscribed: p.Subscribed})
	}
	return map[string][]topicPreferenceResponse{"items": items}
}

// listTopics answers the tenant's topics by name: {items} (at most contacts.MaxTopics).
func (s *server) listTopics(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	ts, err := s.d.Contacts.ListTopics(c.Request().Context(), tid)
	if err != nil {
		return err
	}
	items := make([]topicResponse, 0, len(ts))
	for _, t := range ts {
		items = append(items, toTopicResponse(t))
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

// createTopic creates a topic: 201; a name in use is 409 topic_exists.
func (s *server) createTopic(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req topicRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, err := s.d.Contacts.CreateTopic(c.Request().Context(), tid, req.Name, req.Description)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toTopicResponse(t))
}

// deleteTopic deletes a topic and the contacts' opt-outs of it: 204.
func (s *server) deleteTopic(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	if err := s.d.Contacts.DeleteTopic(c.Request().Context(), tid, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// getContactTopics answers the contact's subscription to each topic: {items: [{name, subscribed}]}.
func (s *server) getContactTopics(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	ps, err := s.d.Contacts.ContactTopics(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toPreferencesResponse(ps))
}

// putContactTopics sets the subscriptions named in the body ({"alerts": false, ...}; topics
// not named keep theirs) and answers all of them as GET does.
func (s *server) putContactTopics(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	var req map[string]bool
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ps, err := s.d.Contacts.SetContactTopics(c.Request().Context(), tid, id, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toPreferencesResponse(ps))
}

// topicSuppressed checks the topic of POST /messages/ ("" for none): 422 invalid_field
// topic when it is not one of the tenant's, and true when the message's contact opted out
// of it. A message to a group (chat_id) has no contact and is never suppressed.
func (s *server) topicSuppressed(ctx context.Context, tenantID uuid.UUID, topic string, nm telegram.NewMessage) (bool, error) {
	if topic == "" {
		return false, nil
	}
	if nm.ContactID == uuid.Nil {
		_, err := contacts.TopicByName(ctx, s.d.Contacts.DB(), tenantID, "topic", topic)
		return false, err
	}
	return s.d.Contacts.Unsubscribed(ctx, tenantID, nm.ContactID, "topic", topic)
}
