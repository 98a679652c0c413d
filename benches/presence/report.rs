//! The one table: each row the engine's figure, the baseline's figure measured in the
//! same run, their ratio (engine cost ÷ baseline cost: 1.0 is the floor, lower is better)
//! and the target set for that row, if it has one.

/// How a figure reads.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Nanoseconds per `per`; shown as a rate too when `rate` is set.
    Time { per: &'static str, rate: bool },
    /// Bytes per `per`, with live heap blocks per `per`.
    Bytes { per: &'static str, blocks: f64 },
    /// A plain factor (a ratio of two costs).
    Factor,
}

/// One side of a row: its cost (ns, bytes or factor per unit).
#[derive(Clone, Copy)]
pub struct Cell {
    pub cost: f64,
    pub kind: Kind,
}

impl Cell {
    pub fn ns(cost: f64, per: &'static str) -> Cell {
        Cell { cost, kind: Kind::Time { per, rate: false } }
    }
    /// A throughput figure, from nanoseconds per item.
    pub fn rate(ns_per: f64, per: &'static str) -> Cell {
        Cell { cost: ns_per, kind: Kind::Time { per, rate: true } }
    }
    pub fn bytes(bytes: f64, blocks: f64, per: &'static str) -> Cell {
        Cell { cost: bytes, kind: Kind::Bytes { per, blocks } }
    }
    pub fn factor(f: f64) -> Cell {
        Cell { cost: f, kind: Kind::Factor }
    }

    fn render(&self) -> String {
        match self.kind {
            Kind::Time { per, rate } => {
                if rate {
                    format!("{}/s ({}/{per})", si(1e9 / self.cost, per), time(self.cost))
                } else {
                    format!("{}/{per}", time(self.cost))
                }
            }
            Kind::Bytes { per, blocks } => {
                format!("{:.0} B/{per} ({blocks:.1} allocs)", self.cost)
            }
            Kind::Factor => format!("{:.2}x", self.cost),
        }
    }
}

/// The target set for a row.
#[derive(Clone, Copy)]
pub enum Target {
    None,
    /// engine/baseline at most this.
    RatioAtMost(f64),
    /// the engine's figure below this many ns.
    EngineNsBelow(f64),
    /// the engine's figure below this many bytes.
    EngineBytesBelow(f64),
    /// the engine's factor at most this (flatness).
    EngineFactorAtMost(f64),
}

pub struct Row {
    pub name: String,
    pub engine: Cell,
    pub baseline: Cell,
    pub target: Target,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        self.engine.cost / self.baseline.cost
    }

    /// `Some(met)` for rows with a target.
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::None => None,
            Target::RatioAtMost(r) => Some(self.ratio() <= r),
            Target::EngineNsBelow(ns) | Target::EngineBytesBelow(ns) => Some(self.engine.cost < ns),
            Target::EngineFactorAtMost(f) => Some(self.engine.cost <= f),
        }
    }

    fn target_text(&self) -> String {
        let what = match self.target {
            Target::None => return String::new(),
            Target::RatioAtMost(r) => format!("ratio <= {r}x"),
            Target::EngineNsBelow(ns) => format!("engine < {}", time(ns)),
            Target::EngineBytesBelow(b) => format!("engine < {b:.0} B"),
            Target::EngineFactorAtMost(f) => format!("engine <= {f}x"),
        };
        let verdict = if self.met() == Some(true) { "met" } else { "MISSED" };
        format!("{what}: {verdict}")
    }
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, name: impl Into<String>, engine: Cell, baseline: Cell, target: Target) {
        let row = Row { name: name.into(), engine, baseline, target };
        eprintln!(
            "  {} | {} | {} | {:.2}x",
            row.name,
            row.engine.render(),
            row.baseline.render(),
            row.ratio()
        );
        self.rows.push(row);
    }

    /// The table as Markdown with aligned columns.
    pub fn table(&self) -> String {
        let header = ["workload", "engine", "baseline", "ratio engine/baseline (cost)", "target"];
        // Rows grouped by workload number (the first word of the name), in run order within.
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| {
            r.name.split_whitespace().next().and_then(|w| w.parse::<u32>().ok()).unwrap_or(u32::MAX)
        });
        let cells: Vec<[String; 5]> = rows
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    r.engine.render(),
                    r.baseline.render(),
                    format!("{:.2}x", r.ratio()),
                    r.target_text(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut s = String::from("|");
            for (i, c) in row.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                if i == 0 || i == 4 {
                    s += &format!(" {c}{} |", " ".repeat(pad));
                } else {
                    s += &format!(" {}{c} |", " ".repeat(pad));
                }
            }
            s
        };
        let mut out = line(&header.map(String::from));
        out.push('\n');
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            if i == 0 || i == 4 {
                out += &format!(":{}|", "-".repeat(w + 1));
            } else {
                out += &format!("{}:|", "-".repeat(w + 1));
            }
        }
        out.push('\n');
        for row in &cells {
            out += &line(row);
            out.push('\n');
        }
        out
    }
}

/// Nanoseconds, readably.
pub fn time(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2} ns")
    } else if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A count with an SI prefix and a unit: `4.12 M op`.
pub fn si(x: f64, unit: &str) -> String {
    if x >= 1e9 {
        format!("{:.2} G{unit}", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M{unit}", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} k{unit}", x / 1e3)
    } else {
        format!("{x:.1} {unit}")
    }
}

/// `10k`, `1M`, `250k`, `300`.
pub fn count(n: usize) -> String {
    if n >= 1_000_000 && n % 100_000 == 0 {
        let m = n as f64 / 1e6;
        if n % 1_000_000 == 0 {
            format!("{}M", n / 1_000_000)
        } else {
            format!("{m:.1}M")
        }
    } else if n >= 1000 && n % 100 == 0 {
        if n % 1000 == 0 {
            format!("{}k", n / 1000)
        } else {
            format!("{:.1}k", n as f64 / 1e3)
        }
    } else {
        n.to_string()
    }
}
