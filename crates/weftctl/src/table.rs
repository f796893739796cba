//! Output of the inspection commands (`proxy-status`, `proxy-config`): aligned text tables,
//! ages (`2m5s`) and UTC timestamps, and the `-o json|yaml` documents for machines.

use serde::Serialize;

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// One JSON document (pretty-printed).
    Json,
    /// One YAML document.
    Yaml,
}

/// `value` as a JSON or YAML document (with a final newline); `None` for [`Output::Table`].
pub fn document<T: Serialize>(output: Output, value: &T) -> Option<String> {
    match output {
        Output::Table => None,
        Output::Json => Some(match serde_json::to_string_pretty(value) {
            Ok(text) => text + "\n",
            Err(e) => format!("{{\"error\": \"cannot encode the output: {e}\"}}\n"),
        }),
        Output::Yaml => Some(
            serde_yaml::to_string(value)
                .unwrap_or_else(|e| format!("error: cannot encode the output: {e}\n")),
        ),
    }
}

/// A text table: a header and rows of cells, printed in columns two spaces apart.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table as text: every column as wide as its widest cell, the last one unpadded,
    /// each line ending with a newline.
    pub fn render(&self) -> String {
        let width = |text: &str| text.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                if i + 1 == line.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(w - width(cell) + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// An age as people read it: `0s`, `45s`, `5m3s`, `2h10m`, `3d5h`.
pub fn age(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time: `2026-12-04T00:18:35Z`.
pub fn utc(unix_secs: u64) -> String {
    let days = unix_secs / 86400;
    let rest = unix_secs % 86400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `text` cut to at most `max` characters, the cut marked with `…`; only its first line.
pub fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    let cut = line.chars().count() > max || line.len() < text.trim_end().len();
    if !cut {
        return line.to_string();
    }
    let kept: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell_and_the_last_is_not_padded() {
        let mut table = Table::new(["NAME", "CDS", "VERSION"]);
        table.row(["client.default", "SYNCED", "0.1.0"]);
        table.row(["a", "STALE (sent 3s ago, no ACK)"]);
        assert_eq!(
            table.render(),
            "NAME            CDS                          VERSION\n\
             client.default  SYNCED                       0.1.0\n\
             a               STALE (sent 3s ago, no ACK)\n"
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(999), "0s");
        assert_eq!(age(45_000), "45s");
        assert_eq!(age(303_000), "5m3s");
        assert_eq!(age(7_800_000), "2h10m");
        assert_eq!(age(277_200_000), "3d5h");
    }

    #[test]
    fn utc_times_are_rfc_3339() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_343_515), "2026-12-04T00:18:35Z");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn shorten_keeps_short_text_and_marks_cuts() {
        assert_eq!(shorten("bad regex", 20), "bad regex");
        assert_eq!(shorten("abcdefghij", 5), "abcd…");
        assert_eq!(shorten("first\nsecond", 20), "first…");
    }

    #[test]
    fn documents_for_machines() {
        #[derive(Serialize)]
        struct Row {
            name: &'static str,
        }
        assert_eq!(document(Output::Table, &Row { name: "a" }), None);
        assert_eq!(
            document(Output::Json, &Row { name: "a" }).as_deref(),
            Some("{\n  \"name\": \"a\"\n}\n")
        );
        assert_eq!(
            document(Output::Yaml, &Row { name: "a" }).as_deref(),
            Some("name: a\n")
        );
    }
}
