package tgemu

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Files: getFile (core.telegram.org/bots/api#getfile) and the file download endpoint
// GET /file/bot<token>/<file_path>. Tests register a file's bytes under a file_id with
// AddFile (or SendPhoto, which also delivers a photo message); any bot may then get it,
// as a file_id received by one bot in real Telegram is usable by that bot.

// emuFile is a registered file.
type emuFile struct {
	uniqueID string
	path     string
	data     []byte
}

// fileStore holds the registered files of a Server.
type fileStore struct {
	mu     sync.Mutex
	byID   map[string]*emuFile
	byPath map[string]*emuFile
}

// maxDownloadSize is getFile's limit: files above 20 MB cannot be downloaded by bots.
const maxDownloadSize = 20 << 20

// AddFile registers data under fileID (file_unique_id fileID+"-u") at file path
// "files/<fileID>" and returns the path; registering the same fileID again replaces it.
func (s *Server) AddFile(fileID string, data []byte) string {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	if s.files.byID == nil {
		s.files.byID, s.files.byPath = map[string]*emuFile{}, map[string]*emuFile{}
	}
	f := &emuFile{uniqueID: fileID + "-u", path: "files/" + fileID, data: append([]byte(nil), data...)}
	s.files.byID[fileID] = f
	s.files.byPath[f.path] = f
	return f.path
}

func (s *Server) fileByID(id string) *emuFile {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	return s.files.byID[id]
}

// getFile: core.telegram.org/bots/api#getfile. An unknown file_id is 400 "Bad Request:
// invalid file_id"; a file above 20 MB is 400 "Bad Request: file is too big".
func (b *bot) getFile(_ context.Context, p params) apiResult {
	id := p.str("file_id")
	if id == "" {
		return badRequest("file_id is empty")
	}
	f := b.s.fileByID(id)
	if f == nil {
		return badRequest("invalid file_id")
	}
	if len(f.data) > maxDownloadSize {
		return badRequest("file is too big")
	}
	return ok(map[string]any{"file_id": id, "file_unique_id": f.uniqueID, "file_size": len(f.data), "file_path": f.path})
}

// serveFile answers GET /file/bot<token>/<file_path> with the file's bytes (404 for an
// unknown token or path), as api.telegram.org does.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	rest, _ := strings.CutPrefix(r.URL.Path, "/file/bot")
	token, path, found := strings.Cut(rest, "/")
	if !found || s.botByToken(token) == nil {
		apiError(http.StatusNotFound, "Not Found").write(w)
		return
	}
	s.files.mu.Lock()
	f := s.files.byPath[path]
	s.files.mu.Unlock()
	if f == nil {
		apiError(http.StatusNotFound, "Not Found").write(w)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	_, _ = w.Write(f.data)
}

// SendPhoto simulates user u sending a photo (registered with AddFile under fileID, with
// data) with caption to the bot in their private chat, and returns the update_id. The
// message carries two PhotoSize entries (a thumbnail "<fileID>-s" and fileID as the
// largest, width x height 800x600).
func (s *Server) SendPhoto(botID int64, u User, fileID string, data []byte, caption string) (int64, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return 0, err
	}
	if u, err = normalizeUser(u); err != nil {
		return 0, err
	}
	if fileID == "" {
		return 0, errors.New("tgemu: empty file_id")
	}
	s.AddFile(fileID, data)
	return b.enqueue("message", func(id int64) (json.RawMessage, error) {
		c := b.chatLocked(u)
		c.lastMsgID++
		from := userJSON(u)
		msg := map[string]any{
			"message_id": c.lastMsgID, "from": from, "chat": privateChat(u), "date": time.Now().Unix(),
			"photo": []jsPhotoSize{
				{FileID: fileID + "-s", FileUniqueID: fileID + "-su", Width: 90, Height: 67, FileSize: 1000},
				{FileID: fileID, FileUniqueID: fileID + "-u", Width: 800, Height: 600, FileSize: len(data)},
			},
		}
		if caption != "" {
			msg["caption"] = caption
		}
		return json.Marshal(map[string]any{"update_id": id, "message": msg})
	}, 0)
}
