package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/botfleet/botfleet/internal/config"
)

// configCmd is `botfleet config`: it prints the effective configuration, one NAME=value line
// per setting in the order of internal/config's struct (or a JSON object with --json),
// secrets redacted (config.Config.Settings), and warns on stderr about variables that look
// like misspelled settings. An invalid setting is an error naming the variable (exit 1).
func configCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (environment and defaults), secrets redacted",
		Long:  configHelp(),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, w := range config.Misspelled(os.Environ()) {
				fmt.Fprintln(stderr, "warning:", w)
			}
			cfg, err := config.Load(getenv)
			if err != nil {
				return err
			}
			return printSettings(stdout, cfg.Settings(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object {NAME: value} instead of NAME=value lines")
	return cmd
}

// printSettings writes settings as NAME=value lines or, with asJSON, one JSON object.
func printSettings(w io.Writer, settings []config.Setting, asJSON bool) error {
	if asJSON {
		m := make(map[string]string, len(settings))
		for _, s := range settings {
			m[s.Name] = s.Value
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	for _, s := range settings {
		if _, err := fmt.Fprintf(w, "%s=%s\n", s.Name, s.Value); err != nil {
			return err
		}
	}
	return nil
}

// configHelp is `botfleet config --help`: every setting with its default, from the struct
// tags (README.md, Configuration, says what each one means).
func configHelp() string {
	var b strings.Builder
	b.WriteString("Print the effective configuration: every setting read from the environment, or its\n" +
		"default, secrets redacted. The settings (README.md, Configuration) and their defaults:\n\n")
	for _, v := range (config.Config{}).Settings() {
		def := v.Default
		switch {
		case def == "":
			def = "(none)"
		case v.Secret && strings.HasSuffix(v.Name, "_URL"):
			def = config.RedactURL(def)
		case v.Secret:
			def = "(a development default, refused in production)"
		}
		fmt.Fprintf(&b, "  %-28s %s\n", v.Name, def)
	}
	return b.String()
}
