package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
)

// patchContactRequest is the body of PATCH /contacts/{id}/: tags (when present and not
// null) replaces the contact's set of tags; attributes merges into the stored attributes
// (JSON merge patch, RFC 7396, one level deep: a key with a value sets it, a key with null
// removes it, keys not named are kept). Rules: contacts.ValidateTags, ValidateAttributes.
//
// external_id (a string sets it, unique per tenant: 409 external_id_taken; null clears it),
// email and phone ("" clears) are contacts.ValidateExternalID, ValidateEmail, ValidatePhone.
type patchContactRequest struct {
	Tags       *[]string                  `json:"tags"`
	Attributes map[string]json.RawMessage `json:"attributes"`
	ExternalID json.RawMessage            `json:"external_id"`
	Email      *string                    `json:"email"`
	Phone      *string                    `json:"phone"`
}

// patchContact sets a contact's tags and merges its attributes: 200 with the contact; another
// tenant's is 404 contact_not_found; a rule failure is 422 invalid_field with details.field
// ("tags[3]", "tags", "attributes.plan", "attributes").
func (s *server) patchContact(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	var req patchContactRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	p := contacts.Patch{Tags: req.Tags, Attributes: req.Attributes, Email: req.Email, Phone: req.Phone}
	if len(req.ExternalID) > 0 {
		p.ExternalIDSet = true
		if string(req.ExternalID) != "null" {
			var ext string
			if err := json.Unmarshal(req.ExternalID, &ext); err != nil {
				return validate.Field("external_id", "external_id must be a string or null")
			}
			p.ExternalID = &ext
		}
	}
	ct, err := s.d.Contacts.Update(c.Request().Context(), tid, id, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toContactResponse(ct))
}

// bulkTagsRequest is the body of POST /contacts/bulk-tags: exactly one of contact_ids (1 to
// contacts.MaxBulkIDs of the tenant's contact ids) and filter (the tenant's contacts of a
// bot and/or with a tag), and the tags to add and to remove.
type bulkTagsRequest struct {
	ContactIDs []string `json:"contact_ids"`
	Filter     *struct {
		BotAppID string `json:"bot_app_id"`
		Tag      string `json:"tag"`
	} `json:"filter"`
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
}

// bulkTagsResponse is the answer of POST /contacts/bulk-tags (contacts.BulkResult).
type bulkTagsResponse struct {
	Matched         int         `json:"matched"`
	Updated         int         `json:"updated"`
	OverLimit       int         `json:"over_limit"`
	OverLimitSample []uuid.UUID `json:"over_limit_sample"`
}

// bulkTags adds and removes tags on many contacts: 200 {matched, updated, over_limit,
// over_limit_sample}. A contact id that is not the tenant's (another tenant's or none) is
// 404 unknown_contacts and nothing changes; a filter's bot that is not the tenant's is 404
// bot_not_found.
func (s *server) bulkTags(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req bulkTagsRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	b := contacts.BulkTags{Add: req.Add, Remove: req.Remove}
	if req.ContactIDs != nil {
		if len(req.ContactIDs) > contacts.MaxBulkIDs {
			return validate.Field("contact_ids", "contact_ids must hold 1-%d ids, not %d", contacts.MaxBulkIDs, len(req.ContactIDs))
		}
		b.IDs = make([]uuid.UUID, len(req.ContactIDs))
		for i, raw := range req.ContactIDs {
			if b.IDs[i], err = validate.UUID(fmt.Sprintf("contact_ids[%d]", i), raw); err != nil {
				return err
			}
		}
	}
	if req.Filter != nil {
		b.Filter = &contacts.BulkFilter{Tag: req.Filter.Tag}
		if b.Filter.BotID, err = validate.OptionalUUID("filter.bot_app_id", req.Filter.BotAppID); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	if b.Filter != nil && b.Filter.BotID != nil && b.IDs == nil {
		if err := s.d.Telegram.RequireBot(ctx, tid, *b.Filter.BotID); err != nil {
			return err
		}
	}
	res, err := s.d.Contacts.BulkTag(ctx, tid, b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, bulkTagsResponse{Matched: res.Matched, Updated: res.Updated, OverLimit: res.OverLimit, OverLimitSample: res.OverLimitSample})
}
