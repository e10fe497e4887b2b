//! CSV as `pandas.read_csv` reads it with its defaults (the C parser): `,` separated, `"`
//! quoting with `""` inside, any line ending, blank lines skipped, a header row, a UTF-8 BOM
//! dropped; pandas' default NA spellings (`""`, `NA`, `null`, `nan`, `None`, …) are reported,
//! since pandas turns them into a float NaN.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::python::read_text;
use crate::{Error, Result};

/// The strings `read_csv` reads as NaN by default.
pub const NA_VALUES: [&str; 19] =
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"];

/// A parsed CSV file: the header's columns and the records with their first line.
pub struct Csv {
    /// The file.
    pub path: PathBuf,
    columns: HashMap<String, usize>,
    /// Records (line number, fields).
    pub rows: Vec<Record>,
}

impl Csv {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Csv> {
        let text = read_text(path)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut records = parse(text).map_err(|(line, reason)| Error::prepare(path, line, reason))?;
        if records.is_empty() {
            return Err(Error::prepare(path, 0, "empty CSV (no header row)"));
        }
        let (_, header) = records.remove(0);
        let columns = header.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        for (line, r) in &records {
            if r.len() != header.len() {
                return Err(Error::prepare(path, *line, format!("{} fields, the header has {}", r.len(), header.len())));
            }
        }
        Ok(Csv { path: path.to_path_buf(), columns, rows: records })
    }

    /// The index of a required column.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.get(name).copied().ok_or_else(|| Error::prepare(&self.path, 1, format!("no column `{name}` in the header")))
    }

    /// The value at (`row`, `column`); an error when pandas would read it as NaN.
    pub fn value(&self, row: usize, column: usize, name: &str) -> Result<&str> {
        let (line, fields) = &self.rows[row];
        let v = fields[column].as_str();
        if NA_VALUES.contains(&v) {
            return Err(Error::prepare(&self.path, *line, format!("column `{name}` is `{v}`, which pandas reads as NaN")));
        }
        Ok(v)
    }

    /// Whether every value of `column` is an integer, as pandas then types it `int64`.
    pub fn all_integers(&self, column: usize) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|(_, f)| is_integer(&f[column]))
    }
}

/// `[+-]?[0-9]+`.
pub fn is_integer(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// A record: the line it starts on and its fields.
type Record = (usize, Vec<String>);

/// Records of `text`; blank lines skipped. An error is (line, reason).
fn parse(text: &str) -> std::result::Result<Vec<Record>, (usize, String)> {
    let text = if text.contains('\r') { text.replace("\r\n", "\n").replace('\r', "\n") } else { text.to_string() };
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        if chars.peek() == Some(&'\n') {
            chars.next();
            line += 1;
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut at_start = true;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err((start, "a quoted field is not closed before the end of the file".into()));
                }
                break;
            };
            if quoted {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                } else {
                    line += usize::from(c == '\n');
                    field.push(c);
                }
                continue;
            }
            match c {
                '"' if at_start => {
                    quoted = true;
                    at_start = false;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    at_start = true;
                }
                '\n' => {
                    line += 1;
                    break;
                }
                c => {
                    field.push(c);
                    at_start = false;
                }
            }
        }
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_and_lines() {
        let r = super::parse("a,b\r\n\"x, \"\"y\"\"\nz\",2\n\n3,\n").unwrap();
        assert_eq!(r, vec![(1, vec!["a".into(), "b".into()]), (2, vec!["x, \"y\"\nz".into(), "2".into()]), (5, vec!["3".into(), "".into()])]);
        assert!(super::parse("\"open").is_err());
    }
}
