//! The README's rules table is held to the rule registry and the rules'
//! configuration: every rule has a row, with its default severity, and
//! every setting of its `[rules.<id>]` section is named there with its
//! default value.

use keywatch::detect::{RuleId, RulesConfig};
use serde_json::Value;

fn rows() -> Vec<(String, String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("\n## Rules\n").expect("a Rules section");
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| rule |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "a row of four cells: {l}");
            (
                cells[0].trim_matches('`').to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
            )
        })
        .collect()
}

fn shown(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

#[test]
fn the_readme_rules_table_matches_the_registry_and_the_settings() {
    let rows = rows();
    let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    let registry: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(ids, registry, "one row per rule, in the registry's order");
    let config = serde_json::to_value(RulesConfig::default()).unwrap();
    for (id, severity, settings) in &rows {
        let rule = RuleId::parse(id).unwrap();
        let sev = rule.info().severity.as_str();
        assert!(
            severity.starts_with(sev),
            "{id}: the default severity {sev} comes first: {severity:?}"
        );
        let section = config[id.as_str()]
            .as_object()
            .unwrap_or_else(|| panic!("[rules.{id}]"));
        for (name, value) in section {
            let named = format!("`{name}`");
            assert!(
                settings.contains(&named),
                "{id}: setting {name} is not in the table: {settings}"
            );
            if let Some(v) = shown(value) {
                assert!(
                    settings.contains(&format!("{named} ({v})")),
                    "{id}: {name}'s default {v} is not in the table: {settings}"
                );
            }
        }
    }
}
