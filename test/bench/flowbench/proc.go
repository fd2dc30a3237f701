package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// procSample is what /proc says about a process tree at one moment.
type procSample struct {
	ticks int64 // utime + stime, in clock ticks
	rssKB int64 // sum of VmRSS
	hwmKB int64 // sum of VmHWM (peak RSS since start or the last reset)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times.
var clockTicks = func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}()

// procTree returns pid and its descendants (nginx's worker, for example).
func procTree(pid int) []int {
	parents := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue
		}
		parents[st.ppid] = append(parents[st.ppid], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, parents[out[i]]...)
	}
	return out
}

type stat struct {
	ppid         int
	utime, stime int64
}

// readStat parses /proc/PID/stat; the command name may hold spaces and
// parentheses, so fields are counted after the last ')'.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("malformed stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return stat{}, fmt.Errorf("short stat %q", b)
	}
	var s stat
	var err1, err2, err3 error
	s.ppid, err1 = strconv.Atoi(f[1])
	s.utime, err2 = strconv.ParseInt(f[11], 10, 64)
	s.stime, err3 = strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return stat{}, fmt.Errorf("malformed stat %q", b)
	}
	return s, nil
}

// statusKB reads a "kB" field such as VmRSS from /proc/PID/status.
func statusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, field)
}

func parseStatusKB(b []byte, field string) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("no %s in status", field)
}

// sample reads CPU time and memory of a process tree.
func sample(pids []int) (procSample, error) {
	var s procSample
	for _, p := range pids {
		st, err := readStat(p)
		if err != nil {
			return s, fmt.Errorf("reading /proc/%d/stat: %w", p, err)
		}
		s.ticks += st.utime + st.stime
		rss, err := statusKB(p, "VmRSS")
		if err != nil {
			return s, fmt.Errorf("reading /proc/%d/status: %w", p, err)
		}
		hwm, err := statusKB(p, "VmHWM")
		if err != nil {
			return s, fmt.Errorf("reading /proc/%d/status: %w", p, err)
		}
		s.rssKB += rss
		s.hwmKB += hwm
	}
	return s, nil
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs value 5), so
// each run reports its own peak.
func resetPeak(pids []int) {
	for _, p := range pids {
		os.WriteFile(filepath.Join("/proc", strconv.Itoa(p), "clear_refs"), []byte("5"), 0)
	}
}
