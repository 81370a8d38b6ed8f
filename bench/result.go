package bench

import (
	"encoding/json"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Result is one row of a report: one system, setting and consumer kind
// running one workload.
type Result struct {
	System     string `json:"system"`
	Setting    string `json:"setting"`
	Consumer   string `json:"consumer,omitempty"`
	Durability string `json:"durability"`
	Kind       Kind   `json:"kind"`
	RecordSize int    `json:"record_size"`
	// Records counts distinct records acknowledged (produce) or delivered
	// (consume, e2e) during the measured interval.
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	MBPerSec      float64 `json:"mb_per_s"` // 10^6 bytes of record values per second
	// LatencyMeasures says what Latency measures, empty when it has no
	// latency (a replay).
	LatencyMeasures string         `json:"latency_measures,omitempty"`
	Latency         LatencySummary `json:"latency"`
	// CoordinatedOmissionCorrected is true in fixed-rate mode: latencies
	// count from each record's intended send time.
	CoordinatedOmissionCorrected bool  `json:"coordinated_omission_corrected"`
	Check                        Check `json:"check"`
}

func (r *Result) setThroughput(records int64, elapsed time.Duration) {
	r.Records = records
	r.Bytes = records * int64(r.RecordSize)
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.RecordsPerSec = float64(records) / r.Seconds
		r.MBPerSec = float64(r.Bytes) / r.Seconds / 1e6
	}
}

// Machine describes where a report was measured.
type Machine struct {
	Cores      int               `json:"cores"`
	GOMAXPROCS int               `json:"gomaxprocs"`
	CPU        string            `json:"cpu,omitempty"`
	OS         string            `json:"os"`
	Arch       string            `json:"arch"`
	GoVersion  string            `json:"go_version"`
	Versions   map[string]string `json:"versions"`
	DataDir    string            `json:"data_dir"`
	// DataDirFS is "disk", "tmpfs" (fsync costs nothing there) or "unknown".
	DataDirFS string `json:"data_dir_fs"`
	// LoadAverage is /proc/loadavg when the run started: other work on the
	// machine takes cores from the systems measured.
	LoadAverage string `json:"load_average,omitempty"`
}

// CurrentMachine describes this process's machine; dataDir is where the
// in-process clusters keep their data.
func CurrentMachine(dataDir string) Machine {
	m := Machine{
		Cores:       runtime.NumCPU(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		CPU:         cpuModel(),
		OS:          runtime.GOOS,
		Arch:        runtime.GOARCH,
		GoVersion:   runtime.Version(),
		DataDir:     dataDir,
		DataDirFS:   fileSystemType(dataDir),
		LoadAverage: loadAverage(),
		Versions: map[string]string{
			"nats-server": server.VERSION,
			"nats.go":     nats.Version,
		},
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		v := info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		m.Versions["raftmq"] = strings.TrimSpace(v)
	}
	return m
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return ""
}

// Report is everything one benchmark invocation measured.
type Report struct {
	Started  time.Time `json:"started"`
	Command  string    `json:"command,omitempty"`
	Workload Workload  `json:"workload"`
	// Sizes lists the record sizes swept (one run per size and target).
	Sizes   []int        `json:"sizes"`
	Machine Machine      `json:"machine"`
	Targets []TargetInfo `json:"targets"`
	Results []Result     `json:"results"`
	Errors  []string     `json:"errors,omitempty"`
}

// WriteJSON writes the report, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// loadAverage returns the 1, 5 and 15 minute load averages, "" when unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(b))
	if len(fields) < 3 {
		return ""
	}
	return strings.Join(fields[:3], " ")
}
