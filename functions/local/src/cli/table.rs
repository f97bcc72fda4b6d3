//! Readable output: JSON rows as an aligned table of chosen columns, or the JSON itself
//! (`--json`, for scripts).

use serde_json::Value;

/// A cell as text: strings bare, null empty, anything else as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints `rows` under `columns` (heading, JSON pointer into each row).
pub fn print(rows: &[Value], columns: &[(&str, &str)]) {
    let cells: Vec<Vec<String>> = rows.iter().map(|row| columns.iter().map(|(_, at)| cell(row.pointer(at).unwrap_or(&Value::Null))).collect()).collect();
    let widths: Vec<usize> =
        columns.iter().enumerate().map(|(i, (head, _))| cells.iter().map(|r| r[i].chars().count()).chain([head.len()]).max().unwrap_or(0)).collect();
    let line = |texts: Vec<&str>| {
        let padded: Vec<String> = texts.iter().zip(&widths).map(|(t, w)| format!("{t:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(head, _)| *head).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// `--json`: the value as the API answered it; else the table.
pub fn show(json: bool, value: &Value, rows: &[Value], columns: &[(&str, &str)]) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        print(rows, columns);
    }
}
