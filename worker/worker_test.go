package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logTask is a domain's task handler: it learns the tenant and bot, then logs.
type logTask struct{ log *slog.Logger }

func (l logTask) RegisterTasks(mux *asynq.ServeMux) {
	mux.HandleFunc("test:log", func(ctx context.Context, _ *asynq.Task) error {
		logging.Add(ctx, slog.String(logging.KeyTenantID, "tenant-1"), slog.String(logging.KeyBotAppID, "bot-1"))
		l.log.InfoContext(ctx, "handled")
		return nil
	})
}

// TestRun_TaskLogScope runs a task through the real worker (asynq on Redis) and checks that
// its log line carries the task id and type, and the tenant and bot it added.
func TestRun_TaskLogScope(t *testing.T) {
	rdb := testenv.Redis(t)
	logs := &lockedBuffer{}
	log := logging.New(logs, logging.FormatJSON, slog.LevelInfo)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Deps{Redis: rdb, Concurrency: 1, SendConcurrency: 1, Log: log, ShutdownTimeout: 2 * time.Second,
			Services: []Registrar{logTask{log}}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	q := asynq.NewClientFromRedisClient(rdb)
	if _, err := q.Enqueue(asynq.NewTask("test:log", nil), asynq.Queue(telegram.QueueDefault), asynq.TaskID("task-log-1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			if !strings.Contains(line, `"handled"`) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			if m["task_id"] != "task-log-1" || m["task_type"] != "test:log" || m["tenant_id"] != "tenant-1" || m["bot_app_id"] != "bot-1" {
				t.Fatalf("task log line: %s", line)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the task never logged: %s", logs.String())
}
