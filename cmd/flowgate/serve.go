package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/flowgate/flowgate/agent"
)

// runServe implements `flowgate run`.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := newConfigFlagSet("run", "Serve HTTPS in front of the Flowable nodes. SIGHUP reloads the configuration; SIGTERM stops gracefully.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q; flags start with --", fs.Arg(0))
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log, err := newLogger(stderr, cfg.Log.Format, cfg.Log.Level, level)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Options{Config: cfg, Logger: log, Version: version, Revision: revision()})
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			log.Info("SIGHUP: reloading configuration", "config", cf.configFile)
			var next agent.Config
			err := a.ReloadFrom(func() (agent.Config, error) {
				var err error
				next, err = cf.load()
				return next, err
			})
			if err != nil {
				log.Error("reload rejected; the running configuration keeps serving", "err", err)
				continue
			}
			if err := setLevel(level, next.Log.Level); err != nil {
				log.Warn("log level", "err", err)
			}
		}
	}
}

func newLogger(w io.Writer, format, levelName string, level *slog.LevelVar) (*slog.Logger, error) {
	if err := setLevel(level, levelName); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: use text or json", format)
}

func setLevel(level *slog.LevelVar, name string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return errors.New("log.level: use debug, info, warn or error")
	}
	level.Set(l)
	return nil
}
