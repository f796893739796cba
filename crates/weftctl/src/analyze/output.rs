//! How findings are printed: istioctl's `Level [CODE] (Kind ns/name file:line) text` lines,
//! or a JSON/YAML list of istioctl's fields (`code`, `level`, `message`, `origin`,
//! `reference`), plus Weft's `name`.

use serde::Serialize;

use super::Finding;

/// `-o`: the output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per finding, as istioctl prints them.
    Log,
    Json,
    Yaml,
}

/// One finding as `-o json|yaml` prints it.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub level: &'a str,
    pub message: &'a str,
    /// `Kind namespace/name`.
    pub origin: String,
    /// `file:line`, when the object came from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl<'a> From<&'a Finding> for Record<'a> {
    fn from(f: &'a Finding) -> Self {
        Self {
            code: f.message.code,
            name: f.message.name,
            level: f.level().as_str(),
            message: &f.text,
            origin: f.resource.to_string(),
            reference: f.origin.as_ref().map(ToString::to_string),
        }
    }
}

/// One istioctl line.
pub fn line(f: &Finding) -> String {
    let origin = match &f.origin {
        Some(origin) => format!("{} {origin}", f.resource),
        None => f.resource.to_string(),
    };
    format!("{} [{}] ({origin}) {}", f.level(), f.message.code, f.text)
}

/// The findings in `format`.
pub fn render(findings: &[&Finding], format: Format) -> Result<String, String> {
    let records: Vec<Record<'_>> = findings.iter().map(|f| Record::from(*f)).collect();
    match format {
        Format::Log => Ok(findings.iter().map(|f| line(f) + "\n").collect()),
        Format::Json => serde_json::to_string_pretty(&records)
            .map(|text| text + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml::to_string(&records).map_err(|e| e.to_string()),
    }
}
