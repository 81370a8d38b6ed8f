package bench

// SummaryRow is one system's headline figures in Summary.
type SummaryRow struct {
	System        string  `json:"system"`
	Setting       string  `json:"setting"`
	Consumer      string  `json:"consumer,omitempty"`
	RecordSize    int     `json:"record_size"`
	RecordsPerSec float64 `json:"records_per_s"`
	MBPerSec      float64 `json:"mb_per_s"`
	// P50, P99 and P999 are latency percentiles in milliseconds; null for
	// a replay (consume), which measures no latency.
	P50  *float64 `json:"p50_ms"`
	P99  *float64 `json:"p99_ms"`
	P999 *float64 `json:"p999_ms"`
	// Durability holds the durability-relevant settings plus "guarantee",
	// what an acknowledgement means in words.
	Durability map[string]string `json:"durability"`
	// OtherConsumers are the same system and setting with its other
	// consumer kinds (JetStream's pull consumer beside the ordered one).
	OtherConsumers []SummaryRow `json:"other_consumers,omitempty"`
}

// Summary is the one-line JSON a scripted "raftmq bench --json" prints
// last: the workload, raftmq's figures at top level, and JetStream's beside
// them.
type Summary struct {
	Workload   Kind    `json:"workload"`
	Brokers    int     `json:"brokers"`
	Partitions int     `json:"partitions"`
	Replicas   int     `json:"replicas"`
	Producers  int     `json:"producers"`
	Consumers  int     `json:"consumers"`
	Count      int64   `json:"count,omitempty"`
	Duration   string  `json:"duration,omitempty"`
	Rate       float64 `json:"rate,omitempty"`
	Window     int     `json:"window"`
	SummaryRow
	JetStreamLazy       *SummaryRow `json:"jetstream_lazy,omitempty"`
	JetStreamSyncAlways *SummaryRow `json:"jetstream_sync_always,omitempty"`
	// NATSFabric is the nats-fabric baseline's row (NATS alone carrying
	// the same batches), when it ran; ShareOfFabric is the top-level
	// row's records/s over it.
	NATSFabric    *SummaryRow `json:"nats_fabric,omitempty"`
	ShareOfFabric float64     `json:"share_of_fabric,omitempty"`
	// Disk is the disk baseline's row (the same batches appended and
	// fdatasynced to a majority of files), when it ran; ShareOfDisk is
	// the top-level row's records/s over it.
	Disk        *SummaryRow `json:"disk,omitempty"`
	ShareOfDisk float64     `json:"share_of_disk,omitempty"`
	OK          bool        `json:"ok"`
	Errors      []string    `json:"errors,omitempty"`
}

// Summary condenses the report: for each system and setting the row of the
// first record size (and first consumer kind, others nested); raftmq's at
// top level, or the first system's when raftmq did not run.
func (r *Report) Summary() Summary {
	w := r.Workload
	s := Summary{
		Workload: w.Kind, Brokers: w.Brokers, Partitions: w.Partitions, Replicas: w.Replicas,
		Producers: w.Producers, Consumers: w.Consumers, Count: w.Count, Rate: w.Rate, Window: r.firstWindow(),
		OK: len(r.Errors) == 0, Errors: r.Errors,
	}
	if w.Duration > 0 {
		s.Duration = w.Duration.String()
	}
	rows := map[string]*SummaryRow{}
	var order []string
	for _, res := range r.Results {
		if len(r.Sizes) > 0 && res.RecordSize != r.Sizes[0] {
			continue
		}
		key := res.System + " " + res.Setting
		row := r.summaryRow(res)
		if existing := rows[key]; existing != nil {
			existing.OtherConsumers = append(existing.OtherConsumers, row)
			continue
		}
		rows[key] = &row
		order = append(order, key)
	}
	s.JetStreamLazy = rows["jetstream "+JetStreamLazy]
	s.JetStreamSyncAlways = rows["jetstream "+JetStreamSyncAlways]
	s.NATSFabric = rows[SystemFabric+" "+fabricSetting]
	s.Disk = rows[SystemDisk+" "+diskSetting]
	top := ""
	for _, key := range order {
		if rows[key].System == "raftmq" {
			top = key
			break
		}
	}
	if top == "" && len(order) > 0 {
		top = order[0]
	}
	if top != "" {
		s.SummaryRow = *rows[top]
		if f := s.NATSFabric; f != nil && f.RecordsPerSec > 0 && s.System != SystemFabric {
			s.ShareOfFabric = s.RecordsPerSec / f.RecordsPerSec
		}
		if d := s.Disk; d != nil && d.RecordsPerSec > 0 && s.System != SystemDisk {
			s.ShareOfDisk = s.RecordsPerSec / d.RecordsPerSec
		}
	}
	return s
}

func (r *Report) summaryRow(res Result) SummaryRow {
	row := SummaryRow{
		System: res.System, Setting: res.Setting, Consumer: res.Consumer, RecordSize: res.RecordSize,
		RecordsPerSec: res.RecordsPerSec, MBPerSec: res.MBPerSec,
		Durability: map[string]string{"guarantee": res.Durability},
	}
	if res.LatencyMeasures != "" && res.Latency.Count > 0 {
		l := res.Latency
		row.P50, row.P99, row.P999 = &l.P50, &l.P99, &l.P999
	}
	for _, t := range r.Targets {
		if t.System == res.System && t.Setting == res.Setting {
			for k, v := range t.Settings {
				row.Durability[k] = v
			}
			break
		}
	}
	return row
}

// firstWindow is the records in flight per producer of the first record
// size run (the automatic window depends on the size).
func (r *Report) firstWindow() int {
	w := r.Workload
	if len(r.Sizes) > 0 {
		w.RecordSize = r.Sizes[0]
	}
	return w.window()
}
