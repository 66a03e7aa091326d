package main

import "time"

// Report is everything one `tcpcryptd-bench` run measured, with what is
// needed to reproduce it. It is written as report.md, results.json and
// results.csv (writeReport).
type Report struct {
	Started  time.Time
	Elapsed  time.Duration
	Machine  Machine
	Versions map[string]string // "go", "tcpcryptd (git)", "gvisor", "wireguard-go", ...
	// Commands: the command line of this run and how each setup was started.
	Commands []string
	// Params: the knobs of this run ("runs": "5", "bulk duration": "3s", ...).
	Params  [][2]string
	Figures []Figure
	// Notes are free-form lines printed at the end (e.g. what a profile showed).
	Notes []string
}

// Machine describes the host the run was on.
type Machine struct {
	CPUModel string
	CPUs     int
	MemTotal uint64 // bytes
	Kernel   string // uname -r
	OS       string // PRETTY_NAME from /etc/os-release
}

// Figure is one measured quantity (a table in the report): a row per setup.
type Figure struct {
	ID    string // "bulk-1-up"
	Title string // "Bulk throughput, 1 stream, laptop to server"
	Unit  string // "MB/s"
	// HigherIsBetter decides how ratios read; it does not change them.
	HigherIsBetter bool
	// Baselines are the setup names ratios are given against, in column
	// order (e.g. "kernel", "wireguard-go").
	Baselines []string
	Rows      []Row
	// Method is one or two sentences on how it was measured.
	Method string
}

// Row is one setup's samples for a figure, one per run.
type Row struct {
	Setup   string
	Samples []float64
	Note    string // e.g. "no daemon"
}
