package api

import (
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/internal/validate"
)

// recipientResponse is one recipient of GET /broadcast/{id}/recipients/: its contact and
// chat, status, attempts (sendMessage calls made), the last error ("" when none), the
// Telegram message id and sent_at (null until sent), and when the row last changed.
type recipientResponse struct {
	ContactID         uuid.UUID  `json:"contact_id"`
	ChatID            int64      `json:"chat_id"`
	Status            string     `json:"status"`
	Attempts          int        `json:"attempts"`
	Error             string     `json:"error"`
	TelegramMessageID *int64     `json:"telegram_message_id"`
	SentAt            *time.Time `json:"sent_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	// recipientHistoryView: cycle and history (broadcast_control.go); not in the CSV.
	recipientHistoryView
}

func toRecipientResponse(r broadcast.RecipientRow) recipientResponse {
	return recipientResponse{
		ContactID: r.ContactID, ChatID: r.ChatID, Status: r.Status, Attempts: r.Attempts, Error: r.Error,
		TelegramMessageID: r.TelegramMessageID, SentAt: timeOrNil(r.SentAt), UpdatedAt: utc(r.UpdatedAt),
		recipientHistoryView: toRecipientHistoryView(r),
	}
}

// recipientsCSVHeader is the header row of GET /broadcast/{id}/recipients.csv: the JSON
// field names of recipientResponse, in the same order.
var recipientsCSVHeader = []string{"contact_id", "chat_id", "status", "attempts", "error", "telegram_message_id", "sent_at", "updated_at"}

// csvRecord is r as a CSV record (recipientsCSVHeader): times RFC 3339 in UTC, null as "".
func csvRecord(r broadcast.RecipientRow) []string {
	var msgID, sentAt string
	if r.TelegramMessageID != nil {
		msgID = strconv.FormatInt(*r.TelegramMessageID, 10)
	}
	if !r.SentAt.IsZero() {
		sentAt = r.SentAt.UTC().Format(time.RFC3339Nano)
	}
	return []string{
		r.ContactID.String(), strconv.FormatInt(r.ChatID, 10), r.Status, strconv.Itoa(r.Attempts), r.Error,
		msgID, sentAt, r.UpdatedAt.UTC().Format(time.RFC3339Nano),
	}
}

// listBroadcastRecipients answers one page of a broadcast's recipients in contact id order,
// optionally of one ?status=; another tenant's broadcast is 404 broadcast_not_found.
func (s *server) listBroadcastRecipients(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", broadcast.ErrNotFound)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	rows, next, err := s.d.Broadcasts.Recipients(c.Request().Context(), tid, id,
		broadcast.RecipientFilter{Status: c.QueryParam("status"), Cursor: cursor, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(rows, next, toRecipientResponse))
}

// exportBroadcastRecipients streams the recipients (optionally of one ?status=) as CSV, a
// page of broadcast.ExportPage rows at a time, flushed after each page. Errors found before
// the first row (unknown broadcast, bad status) are the usual JSON errors; a failure in
// the middle of the stream is logged and aborts the connection, so that the client sees
// the transfer fail.
func (s *server) exportBroadcastRecipients(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", broadcast.ErrNotFound)
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if _, err := broadcast.ValidateRecipientStatus("status", status); err != nil {
		return err
	}
	res := c.Response()
	var w *csv.Writer
	err = s.d.Broadcasts.EachRecipient(c.Request().Context(), tid, id, status, func(rows []broadcast.RecipientRow) error {
		if w == nil {
			w = startRecipientsCSV(res, id)
		}
		// The server's WriteTimeout bounds a whole response; a large export to a slow
		// client gets it afresh for each page instead (ignored where not supported).
		_ = http.NewResponseController(res).SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, r := range rows {
			if err := w.Write(csvRecord(r)); err != nil {
				return clientWriteError{err}
			}
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return clientWriteError{err}
		}
		res.Flush()
		return nil
	})
	if err != nil && w != nil {
		// The 200 and part of the file are out. The error handler writes nothing on a
		// committed response, so the cause is logged here (a client that went away is only
		// a warning), and the connection is aborted (net/http's ErrAbortHandler, passed on
		// by echo's Recover) so that the client sees a broken transfer, never a complete
		// looking file (a normal return would send the closing chunk).
		level := slog.LevelError
		if errors.As(err, new(clientWriteError)) || c.Request().Context().Err() != nil {
			level = slog.LevelWarn
		}
		s.log.Log(c.Request().Context(), level, "recipients CSV cut short", "request_id", reqID(c), "broadcast_id", id, "error", err)
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		return err
	}
	if w == nil { // no recipient (of that status): the header row only
		w = startRecipientsCSV(res, id)
		w.Flush()
		return w.Error()
	}
	return nil
}

// clientWriteError is a failed write of the CSV export to the client (it went away).
type clientWriteError struct{ err error }

func (e clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e clientWriteError) Unwrap() error { return e.err }

// startRecipientsCSV writes the 200 headers and the header row of broadcast id's CSV.
func startRecipientsCSV(res *echo.Response, id uuid.UUID) *csv.Writer {
	res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	res.Header().Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="broadcast-%s-recipients.csv"`, id))
	res.WriteHeader(http.StatusOK)
	w := csv.NewWriter(res)
	_ = w.Write(recipientsCSVHeader) // errors surface in w.Error after Flush
	return w
}

// broadcastListFilter reads the filters of GET /broadcast/: ?status= (a comma list of
// broadcast statuses), ?bot_app_id=, ?created_after= and ?created_before= (RFC 3339); each
// malformed one is 422 invalid_field naming it.
func broadcastListFilter(c echo.Context) (broadcast.Filter, error) {
	var f broadcast.Filter
	var err error
	if f.Statuses, err = broadcast.ValidateStatuses("status", c.QueryParam("status")); err != nil {
		return f, err
	}
	if f.BotID, err = optionalUUIDQuery(c, "bot_app_id"); err != nil {
		return f, err
	}
	if f.CreatedAfter, err = timeQuery(c, "created_after"); err != nil {
		return f, err
	}
	if f.CreatedBefore, err = timeQuery(c, "created_before"); err != nil {
		return f, err
	}
	return f, nil
}

// timeQuery reads the optional RFC 3339 time query parameter name (zero when absent; 422
// invalid_field when it does not parse or lies outside years 1..9999, which PostgreSQL
// cannot compare with).
func timeQuery(c echo.Context, name string) (time.Time, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil || t.Year() < 1 || t.UTC().Year() < 1 || t.UTC().Year() > 9999 {
		return time.Time{}, validate.Field(name, "%s must be a time in RFC 3339 form, e.g. 2026-12-01T00:00:00Z", name)
	}
	return t.UTC(), nil
}
