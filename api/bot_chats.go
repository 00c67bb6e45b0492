package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/telegram"
)

// botChatResponse is a group, supergroup or channel the bot belongs to (or belonged to),
// from the last my_chat_member update about it.
type botChatResponse struct {
	ID       uuid.UUID `json:"id"`
	BotAppID uuid.UUID `json:"bot_app_id"`
	// ChatID is Telegram's chat id: the chat_id of POST /messages/.
	ChatID   int64  `json:"chat_id"`
	Type     string `json:"type"`
	Title    string `json:"title"`
	Username string `json:"username"`
	IsForum  bool   `json:"is_forum"`
	// Status is the bot's status: administrator, member, restricted, left or kicked.
	Status string `json:"status"`
	// Rights are the fields of the bot's ChatMemberAdministrator or ChatMemberRestricted.
	Rights    json.RawMessage `json:"rights"`
	ChangedAt time.Time       `json:"changed_at"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func toBotChatResponse(c telegram.BotChat) botChatResponse {
	rights := c.Rights
	if len(rights) == 0 {
		rights = json.RawMessage(`{}`)
	}
	return botChatResponse{
		ID: c.ID, BotAppID: c.BotID, ChatID: c.ChatID, Type: c.Type, Title: c.Title, Username: c.Username,
		IsForum: c.IsForum, Status: c.Status, Rights: rights, ChangedAt: utc(c.ChangedAt),
		CreatedAt: utc(c.CreatedAt), UpdatedAt: utc(c.UpdatedAt),
	}
}

// listBotChats answers GET /telegram/v1/bots/{bot_app_id}/chats/: a page of the bot's
// groups, supergroups and channels, filtered by ?status= and ?type= (telegram.ListBotChats).
func (s *server) listBotChats(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	chats, next, err := s.d.Telegram.ListBotChats(c.Request().Context(), tid, id, telegram.BotChatFilter{
		Status: c.QueryParam("status"), Type: c.QueryParam("type"), Cursor: cursor, Limit: limit,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(chats, next, toBotChatResponse))
}
