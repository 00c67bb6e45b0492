package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/telegram"
)

// rotateCmd is `botfleet rotate-encryption-key`: it re-seals every bot token with
// ENCRYPTION_KEY (telegram.ReencryptTokens), opening the old ones with ENCRYPTION_KEY or
// ENCRYPTION_KEYS, and prints what it did. It needs PostgreSQL only. The exit code is
// non-zero when a token could not be re-sealed; running it again is safe.
func rotateCmd(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var batch int
	cmd := &cobra.Command{
		Use:   "rotate-encryption-key",
		Short: "Re-encrypt every bot token with ENCRYPTION_KEY (old keys in ENCRYPTION_KEYS); safe to run while the platform runs, and twice",
		Long: `Re-encrypts every bot token (deleted bots included) with ENCRYPTION_KEY, reading tokens
sealed with an older key listed in ENCRYPTION_KEYS or in the format of earlier releases.
Afterwards the old keys can be removed from ENCRYPTION_KEYS (README.md, Key rotation).
Prints how many tokens were re-encrypted, already current, and failed; exits non-zero
when any failed (each failure is logged with its bot_app_id).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return rotateEncryptionKey(ctx, getenv, batch, stdout, stderr)
		},
	}
	cmd.Flags().IntVar(&batch, "batch-size", telegram.DefaultReencryptBatch, "bots read and written per statement")
	return cmd
}

func rotateEncryptionKey(ctx context.Context, getenv func(string) string, batch int, stdout, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, cfg.LogFormatName(), cfg.SlogLevel())
	key, err := cfg.Key()
	if err != nil {
		return err
	}
	old, err := cfg.OldKeys()
	if err != nil {
		return err
	}
	keys, err := telegram.NewKeyring(key, old...)
	if err != nil {
		return err
	}
	db, err := database.Open(cfg.DatabaseURL.Reveal(), database.WithMaxConns(2))
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := telegram.ReencryptTokens(ctx, db, keys, batch, log)
	fmt.Fprintf(stdout, "rotate-encryption-key: key %s: %d re-encrypted, %d already current, %d failed\n",
		keys.CurrentID(), res.Reencrypted, res.Current, res.Failed)
	if err != nil {
		return fmt.Errorf("rotate-encryption-key: %w (run it again: it is idempotent)", err)
	}
	// Webhook endpoints' signing secrets are sealed with the same keys (callbacks package).
	cbDone, cbFailed, err := callbacks.ReencryptSecrets(ctx, db, keys, log)
	fmt.Fprintf(stdout, "rotate-encryption-key: webhook signing secrets: %d re-encrypted, %d failed\n", cbDone, cbFailed)
	if err != nil {
		return fmt.Errorf("rotate-encryption-key: %w (run it again: it is idempotent)", err)
	}
	if cbFailed > 0 {
		return fmt.Errorf("rotate-encryption-key: %d webhook signing secret(s) could not be re-encrypted; see the log above (keep their key in ENCRYPTION_KEYS)", cbFailed)
	}
	if res.Failed > 0 {
		return fmt.Errorf("rotate-encryption-key: %d bot token(s) could not be re-encrypted; see the log above (keep their key in ENCRYPTION_KEYS)", res.Failed)
	}
	return nil
}
