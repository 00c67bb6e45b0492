package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
)

// Contacts CSV limits.
const (
	// ContactImportBodyLimit bounds a POST /contacts/import/ body (8 MiB).
	ContactImportBodyLimit = 8 << 20
	// ContactImportMaxRows bounds the data rows of one import.
	ContactImportMaxRows = 50_000
	// contactImportMaxRejected bounds the rejected rows listed in the answer (the count is
	// always exact).
	contactImportMaxRejected = 1000
)

// contactsCSVHeader is the header row of GET /contacts/export/. tags are joined with "|"
// (a tag containing "|" does not survive an import of the export), attributes are a JSON
// object, times RFC 3339 in UTC; bot_app_ids are the bots the person wrote to (joined with
// "|", oldest first).
var contactsCSVHeader = []string{"id", "external_id", "telegram_chat_id", "telegram_user_id", "telegram_username",
	"first_name", "last_name", "language_code", "email", "phone", "tags", "attributes", "created_at", "last_seen_at",
	"bot_app_ids"}

// exportContacts streams the tenant's contacts as CSV (text/csv, header contactsCSVHeader),
// newest first, in pages of page.MaxLimit (one query each: the export is never held in
// memory), with the filters of GET /contacts/. Cells the Telegram user wrote (first and
// last name) that a spreadsheet would run as a formula (starting with = + - @, tab or CR)
// get a leading "'" (OWASP, CSV injection). A failure after the first page aborts the
// transfer, as the recipients export does.
func (s *server) exportContacts(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	botID, err := optionalUUIDQuery(c, "bot_app_id")
	if err != nil {
		return err
	}
	f := contacts.ListFilter{BotID: botID, Tag: c.QueryParam("tag"), Limit: page.MaxLimit}
	if f.Tag != "" {
		if err := contacts.ValidateTag("tag", f.Tag); err != nil {
			return err
		}
	}
	if botID != nil {
		if err := s.d.Telegram.RequireBot(c.Request().Context(), tid, *botID); err != nil {
			return err
		}
	}
	res := c.Response()
	var w *csv.Writer
	for {
		cs, next, err := s.d.Contacts.List(c.Request().Context(), tid, f)
		if err != nil {
			if w == nil {
				return err
			}
			level := slog.LevelError
			if c.Request().Context().Err() != nil {
				level = slog.LevelWarn
			}
			s.log.Log(c.Request().Context(), level, "contacts CSV cut short", "request_id", reqID(c), "error", err)
			panic(http.ErrAbortHandler)
		}
		if w == nil {
			res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
			res.Header().Set(echo.HeaderContentDisposition, `attachment; filename="contacts.csv"`)
			res.WriteHeader(http.StatusOK)
			w = csv.NewWriter(res)
			_ = w.Write(contactsCSVHeader)
		}
		_ = http.NewResponseController(res).SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, ct := range cs {
			_ = w.Write(contactCSVRecord(ct))
		}
		w.Flush()
		if err := w.Error(); err != nil {
			s.log.WarnContext(c.Request().Context(), "contacts CSV cut short", "request_id", reqID(c), "error", err)
			panic(http.ErrAbortHandler)
		}
		res.Flush()
		if next == "" {
			return nil
		}
		f.Cursor = next
	}
}

// contactCSVRecord is one row of the contacts export.
func contactCSVRecord(ct contacts.Contact) []string {
	attrs := []byte("{}")
	if len(ct.Attributes) > 0 {
		attrs, _ = json.Marshal(ct.Attributes)
	}
	last := ""
	if !ct.LastSeenAt.IsZero() {
		last = ct.LastSeenAt.UTC().Format(time.RFC3339Nano)
	}
	return []string{ct.ID.String(), ct.ExternalID, strconv.FormatInt(ct.TelegramChatID, 10), strconv.FormatInt(ct.TelegramUserID, 10),
		ct.TelegramUsername, csvFormulaSafe(ct.FirstName), csvFormulaSafe(ct.LastName), ct.LanguageCode, ct.Email, ct.Phone,
		strings.Join(ct.Tags, "|"), string(attrs), ct.CreatedAt.UTC().Format(time.RFC3339Nano), last, botAppIDs(ct.Bots)}
}

// botAppIDs joins the bots of links with "|".
func botAppIDs(links []contacts.Link) string {
	ids := make([]string, len(links))
	for i, l := range links {
		ids[i] = l.BotID.String()
	}
	return strings.Join(ids, "|")
}

// csvFormulaSafe prefixes "'" to a cell a spreadsheet would evaluate as a formula.
func csvFormulaSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// contactImportResponse is the answer of POST /contacts/import/.
type contactImportResponse struct {
	// Applied is the number of rows applied to a contact.
	Applied int `json:"applied"`
	// RejectedCount is the number of rows refused; Rejected lists the first 1,000.
	RejectedCount int                 `json:"rejected_count"`
	Rejected      []contactImportFail `json:"rejected"`
}

// contactImportFail is one refused row: its number (1 = the first data row, after the
// header), the error code and message, and the column at fault ("" when not one).
type contactImportFail struct {
	Row    int    `json:"row"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	Field  string `json:"field,omitempty"`
}

// contactImportColumns are the columns an import applies; the export's other columns
// (telegram_*, names, times) are accepted and ignored, so that an export can be edited and
// imported back. Unknown columns are a 422.
var contactImportColumns = map[string]bool{"id": true, "external_id": true, "tags": true, "attributes": true, "email": true, "phone": true,
	"telegram_chat_id": false, "telegram_user_id": false, "telegram_username": false, "first_name": false, "last_name": false,
	"language_code": false, "created_at": false, "last_seen_at": false, "bot_app_ids": false}

// importContacts merges a CSV (Content-Type text/csv, header row first) into the tenant's
// EXISTING contacts: a row names its contact by `id`, or else by `external_id`; it never
// creates a contact (a contact is a Telegram identity, which only Telegram gives). A
// non-empty cell replaces the stored value: `tags` ("|"-separated; the whole set),
// `attributes` (a JSON object merged like PATCH: null removes a key), `external_id` (when
// the row is matched by id), `email`, `phone`; an empty cell changes nothing. Each row is
// applied on its own (PATCH /contacts/{id}/'s rules and transaction), so a bad row refuses
// only itself: 200 {applied, rejected_count, rejected: [{row, code, reason, field}]}.
// Errors for the whole file: 415 for another Content-Type, 413 past 8 MiB, 422
// invalid_field (field "csv") for a header without id nor external_id, an unknown column,
// more than 50,000 rows or a malformed CSV.
func (s *server) importContacts(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType)); err != nil || mt != "text/csv" {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "the request body must be CSV: send Content-Type: text/csv")
	}
	r := csv.NewReader(c.Request().Body)
	r.FieldsPerRecord = 0
	header, err := r.Read()
	if err != nil {
		return csvError(err, "the body must start with a header row (id or external_id, and the columns to set)")
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, ok := contactImportColumns[h]; !ok {
			return validate.Field("csv", "unknown column %q; columns: id, external_id, tags, attributes, email, phone (and the export's other columns, ignored)", h)
		}
		if _, dup := col[h]; dup {
			return validate.Field("csv", "column %q appears twice", h)
		}
		col[h] = i
	}
	_, hasID := col["id"]
	_, hasExt := col["external_id"]
	if !hasID && !hasExt {
		return validate.Field("csv", "the header must name id or external_id: the column that finds each row's contact")
	}
	var rows [][]string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return csvError(err, "")
		}
		if len(rows) == ContactImportMaxRows {
			return validate.Field("csv", "at most %d rows per import", ContactImportMaxRows)
		}
		rows = append(rows, rec)
	}
	ctx := c.Request().Context()
	resp := contactImportResponse{Rejected: []contactImportFail{}}
	for i, rec := range rows {
		cell := func(name string) string {
			if j, ok := col[name]; ok && j < len(rec) {
				return strings.TrimSpace(rec[j])
			}
			return ""
		}
		err := s.importRow(ctx, tid, cell)
		if err == nil {
			resp.Applied++
			continue
		}
		var ae *apperr.Error
		if !errors.As(err, &ae) || apperr.KindOf(err) == apperr.KindUnavailable || apperr.KindOf(err) == apperr.KindInternal {
			return err // PostgreSQL down or a bug: the whole request fails (rows applied so far stay)
		}
		resp.RejectedCount++
		if len(resp.Rejected) < contactImportMaxRejected {
			fail := contactImportFail{Row: i + 1, Code: ae.Code, Reason: ae.Message}
			if d, ok := ae.Details.(map[string]any); ok {
				fail.Field, _ = d["field"].(string)
			}
			resp.Rejected = append(resp.Rejected, fail)
		}
	}
	return c.JSON(http.StatusOK, resp)
}

// importRow applies one import row (see importContacts) through contacts.Update.
func (s *server) importRow(ctx context.Context, tid uuid.UUID, cell func(string) string) error {
	var id uuid.UUID
	byID := cell("id") != ""
	switch {
	case byID:
		v, err := validate.UUID("id", cell("id"))
		if err != nil {
			return err
		}
		id = v
	case cell("external_id") != "":
		ct, err := s.d.Contacts.GetByExternalID(ctx, tid, cell("external_id"))
		if err != nil {
			return err
		}
		id = ct.ID
	default:
		return validate.Field("id", "the row has neither id nor external_id")
	}
	var p contacts.Patch
	if v := cell("tags"); v != "" {
		tags := strings.Split(v, "|")
		p.Tags = &tags
	}
	if v := cell("attributes"); v != "" {
		if err := json.Unmarshal([]byte(v), &p.Attributes); err != nil || p.Attributes == nil {
			return validate.Field("attributes", "attributes must be a JSON object")
		}
	}
	if v := cell("external_id"); v != "" && byID {
		p.ExternalIDSet, p.ExternalID = true, &v
	}
	if v := cell("email"); v != "" {
		p.Email = &v
	}
	if v := cell("phone"); v != "" {
		p.Phone = &v
	}
	_, err := s.d.Contacts.Update(ctx, tid, id, p)
	return err
}

// csvError is the 422 of a CSV that does not parse (or a too large body: 413).
func csvError(err error, hint string) error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return err
	}
	if strings.Contains(err.Error(), "request body too large") {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "the CSV is larger than 8 MiB")
	}
	msg := fmt.Sprintf("the body is not valid CSV: %v", err)
	if hint != "" && errors.Is(err, io.EOF) {
		msg = hint
	}
	return validate.Field("csv", "%s", msg)
}
