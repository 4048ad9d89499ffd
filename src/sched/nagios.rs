//! Reading a Nagios / monitoring-plugins check: the exit code is the
//! status, the first line of output is the reason, and perfdata
//! (`'label'=value[UOM];warn;crit;min;max`, after a `|`) becomes
//! structured `details`. This is what makes every existing plugin a
//! Puptime probe.

use crate::event::{layer, ErrorInfo, Status};
use serde_json::{json, Map, Value};

/// What a plugin's run says, ready to go into a result event.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: Status,
    pub reason: String,
    pub error: Option<ErrorInfo>,
    pub details: Map<String, Value>,
}

/// Reads a plugin's output and exit code (`None`: killed by a signal).
pub fn read(output: &str, exit: Option<i32>) -> Verdict {
    let mut lines = output.lines();
    let first = lines.next().unwrap_or("");
    let (text, mut perf) = match first.split_once('|') {
        Some((t, p)) => (t.trim(), p.trim().to_string()),
        None => (first.trim(), String::new()),
    };
    // Long output: the following lines, until a `|` starts more perfdata.
    let mut long = Vec::new();
    for l in lines.by_ref() {
        if let Some((t, p)) = l.split_once('|') {
            if !t.trim().is_empty() {
                long.push(t.trim_end());
            }
            perf.push(' ');
            perf.push_str(p.trim());
            break;
        }
        long.push(l.trim_end());
    }
    for l in lines {
        perf.push(' ');
        perf.push_str(l.trim());
    }
    let status = match exit {
        Some(c) => Status::from_exit_code(c),
        None => Status::Unknown,
    };
    let reason = if text.is_empty() {
        match exit {
            Some(c) => format!("no output (exit {c})"),
            None => "no output (killed by a signal)".to_string(),
        }
    } else {
        text.to_string()
    };
    let error = match exit {
        Some(0) => None,
        Some(1) => Some(ErrorInfo::new(layer::PROTOCOL, "nagios_warning")),
        Some(2) => Some(ErrorInfo::new(layer::PROTOCOL, "nagios_critical")),
        Some(3) => Some(ErrorInfo::new(layer::INTERNAL, "nagios_unknown")),
        _ => Some(ErrorInfo::new(layer::INTERNAL, "bad_exit")),
    };
    let reason = match exit {
        Some(c) if !(0..=3).contains(&c) => format!("exit code {c} is not 0-3: {reason}"),
        None => format!("killed by a signal: {reason}"),
        _ => reason,
    };
    let mut details = Map::new();
    details.insert("exit_code".into(), exit.map_or(Value::Null, Value::from));
    let perfdata = parse_perfdata(&perf);
    if !perfdata.is_empty() {
        details.insert("perfdata".into(), Value::Array(perfdata));
    }
    if !long.is_empty() {
        details.insert("long_output".into(), Value::from(long.join("\n")));
    }
    Verdict {
        status,
        reason,
        error,
        details,
    }
}

/// Parses perfdata: blank-separated `label=value[UOM];warn;crit;min;max`,
/// where a label with blanks is in single quotes (`''` is a quote).
/// Malformed items are skipped, as Nagios itself does.
pub fn parse_perfdata(s: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut label = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        label.push('\'');
                    }
                    Some('\'') | None => break,
                    Some(c) => label.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                label.push(c);
                chars.next();
            }
        }
        let mut rest = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            rest.push(c);
            chars.next();
        }
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        if label.is_empty() {
            continue;
        }
        if let Some(item) = perf_item(&label, rest) {
            out.push(item);
        }
    }
    out
}

fn perf_item(label: &str, rest: &str) -> Option<Value> {
    let mut fields = rest.split(';');
    let value = fields.next()?;
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(value.len());
    let (num, uom) = value.split_at(split);
    // "U" is the plugin saying the value is unknown.
    let v = if value == "U" {
        Value::Null
    } else {
        let n: f64 = num.parse().ok()?;
        json!(n)
    };
    let uom = if value == "U" { "" } else { uom };
    let mut item = Map::new();
    item.insert("label".into(), label.into());
    item.insert("value".into(), v);
    if !uom.is_empty() {
        item.insert("uom".into(), uom.into());
    }
    for key in ["warn", "crit", "min", "max"] {
        match fields.next() {
            Some(f) if !f.is_empty() => {
                // Thresholds are ranges (`10:20`, `@5`): keep them as text;
                // min and max are plain numbers.
                let val = if key == "min" || key == "max" {
                    f.parse::<f64>().map_or_else(|_| json!(f), |n| json!(n))
                } else {
                    json!(f)
                };
                item.insert(key.into(), val);
            }
            _ => {}
        }
    }
    Some(Value::Object(item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfdata_with_quoted_labels_units_and_thresholds() {
        let p = parse_perfdata(
            "time=0.0012s;1.0;2.0;0.000000;10.000000 'disk used'=85%;80;90 'it''s'=U x=3 junk",
        );
        assert_eq!(
            p,
            vec![
                json!({"label":"time","value":0.0012,"uom":"s","warn":"1.0","crit":"2.0","min":0.0,"max":10.0}),
                json!({"label":"disk used","value":85.0,"uom":"%","warn":"80","crit":"90"}),
                json!({"label":"it's","value":null}),
                json!({"label":"x","value":3.0}),
            ]
        );
    }

    #[test]
    fn exit_codes_and_reason() {
        let v = read("TCP OK - 0.001 second response time|time=0.001s\n", Some(0));
        assert_eq!(v.status, Status::Up);
        assert_eq!(v.reason, "TCP OK - 0.001 second response time");
        assert!(v.error.is_none());
        let v = read("", Some(2));
        assert_eq!(
            (v.status, v.reason.as_str()),
            (Status::Down, "no output (exit 2)")
        );
        assert_eq!(v.error.unwrap().kind, "nagios_critical");
        let v = read("weird\nmore | a=1\nb=2\n", Some(7));
        assert_eq!(v.status, Status::Unknown);
        assert_eq!(v.error.unwrap().kind, "bad_exit");
        assert_eq!(v.details["long_output"], "more");
        assert_eq!(v.details["perfdata"].as_array().unwrap().len(), 2);
    }
}
