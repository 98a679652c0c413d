//! The lists the engine defines once (error kinds and their result codes, event types,
//! close reasons) against every other place that spells them out: the C header, the C#
//! binding's enumeration and constants (tests/docs.rs checks the contract's tables). A
//! code, type or reason added to the engine fails here until each binding lists it.
use presence::{CloseReason, ErrorKind, EventKind};
use std::fs;

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The body of the first `{ ... }` block after `start` in `text`.
fn block_after<'a>(text: &'a str, start: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no `{start}`"));
    let open = from + text[from..].find('{').expect("an opening brace");
    let close = open + text[open..].find('}').expect("a closing brace");
    &text[open + 1..close]
}

/// Every result code as (name in the C# binding, number, C name, description): success
/// first, then each error kind.
fn result_codes() -> Vec<(String, u32, String, Option<String>)> {
    let mut codes = vec![("Ok".to_owned(), 0, "PRESENCE_OK".to_owned(), None)];
    for &kind in ErrorKind::ALL {
        let description = kind.description();
        let lowered = description[..1].to_lowercase() + &description[1..];
        codes.push((format!("{kind:?}"), kind.code(), kind.name().to_owned(), Some(lowered)));
    }
    codes
}

/// `Name = number,` entries of a C# enum body, each with the text of its `<summary>`.
fn csharp_enum_entries(body: &str) -> Vec<(String, u32, String)> {
    let mut entries = Vec::new();
    let mut summary = String::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(doc) = line.strip_prefix("/// <summary>") {
            summary = doc.trim_end_matches("</summary>").to_owned();
        } else {
            let (name, number) = line.trim_end_matches(',').split_once(" = ").expect("`Name = number,`");
            entries.push((name.to_owned(), number.parse().expect("a number"), std::mem::take(&mut summary)));
        }
    }
    entries
}

#[test]
fn the_csharp_result_enum_matches_the_error_kinds() {
    let native = read("bindings/csharp/Runtime/Native.cs");
    let entries = csharp_enum_entries(block_after(&native, "public enum PresenceResult"));
    let expected: Vec<(String, u32, String)> = result_codes()
        .into_iter()
        .map(|(name, number, c_name, description)| {
            let summary = match description {
                Some(d) => format!("{c_name}: {d}"),
                None => c_name,
            };
            (name, number, summary)
        })
        .collect();
    assert_eq!(entries, expected, "bindings/csharp/Runtime/Native.cs PresenceResult");
}

#[test]
fn the_c_header_numbers_every_result_code_as_the_engine_does() {
    let header = read("include/presence.h");
    let body = block_after(&header, "typedef enum PresenceResult");
    let entries: Vec<(String, u32)> = body
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("PRESENCE_"))
        .map(|l| {
            let (name, number) = l.trim_end_matches(',').split_once(" = ").expect("`NAME = number,`");
            (name.to_owned(), number.parse().expect("a number"))
        })
        .collect();
    let expected: Vec<(String, u32)> =
        result_codes().into_iter().map(|(_, number, c_name, _)| (c_name, number)).collect();
    assert_eq!(entries, expected, "include/presence.h PresenceResult");
}

#[test]
fn event_types_are_numbered_once_and_listed_by_every_binding() {
    let numbers: Vec<u32> = EventKind::TYPES.iter().map(|&(n, _)| n).collect();
    assert_eq!(numbers, (1..=EventKind::TYPES.len() as u32).collect::<Vec<_>>(), "numbers 1, 2, ...");

    let models = read("bindings/csharp/Runtime/Models.cs");
    let constants: Vec<&str> = block_after(&models, "public static class EventTypes")
        .lines()
        .filter_map(|l| l.split_once(" = \"").map(|(_, value)| value.trim_end_matches("\";")))
        .collect();
    let names: Vec<&str> = EventKind::TYPES.iter().map(|&(_, name)| name).collect();
    assert_eq!(constants, names, "bindings/csharp/Runtime/Models.cs EventTypes");

    let header = read("include/presence.h");
    let event = block_after(&header, "typedef struct PresenceEvent");
    let type_doc = &event[..event.find("const char *type;").expect("PresenceEvent.type")];
    for name in names {
        assert!(
            type_doc.contains(&format!("\"{name}\"")),
            "the header's PresenceEvent.type doc lacks {name}"
        );
    }
}

#[test]
fn close_reasons_are_numbered_once_and_named_by_the_csharp_binding() {
    let numbers: Vec<u32> = CloseReason::ALL.iter().map(|&r| r as u32).collect();
    assert_eq!(numbers, (1..=CloseReason::ALL.len() as u32).collect::<Vec<_>>(), "numbers 1, 2, ...");
    let models = read("bindings/csharp/Runtime/Models.cs");
    let reason_doc = models.lines().find(|l| l.contains("connection.closed: \"")).expect("Reason's doc");
    for reason in CloseReason::ALL {
        let name = reason.as_str();
        assert!(reason_doc.contains(&format!("\"{name}\"")), "Models.cs Reason's doc lacks {name}");
    }
}

#[test]
fn the_csharp_binding_maps_native_numbers_to_the_same_names() {
    // EventTypes.Name and EventTypes.CloseReasonName turn PresenceEventInfo's numbers into
    // names; each `case N: return X;` must say what the engine says.
    // A case may name its number through EventKinds (`internal const uint X = N;`).
    let models = read("bindings/csharp/Runtime/Models.cs");
    let kinds: Vec<(String, u32)> = block_after(&models, "internal static class EventKinds")
        .lines()
        .filter_map(|l| l.split_once("internal const uint "))
        .map(|(_, rest)| {
            let (name, value) = rest.split_once(" = ").expect("a constant");
            (format!("EventKinds.{name}"), value.trim_end_matches(';').parse().expect("a number"))
        })
        .collect();
    let constants: Vec<(String, String)> = block_after(&models, "public static class EventTypes")
        .lines()
        .filter_map(|l| l.split_once("public const string "))
        .map(|(_, rest)| {
            let (name, value) = rest.split_once(" = \"").expect("a constant");
            (name.to_owned(), value.trim_end_matches("\";").to_owned())
        })
        .collect();
    let cases = |start: &str| -> Vec<(u32, String)> {
        let from = models.find(start).unwrap_or_else(|| panic!("no `{start}`"));
        let body = &models[from..from + models[from..].find("default:").expect("a default case")];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("case "))
            .map(|l| {
                let (number, value) = l.split_once(": return ").expect("`case N: return X;`");
                let value = value.trim_end_matches(';');
                let name = constants
                    .iter()
                    .find(|(c, _)| c == value)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| value.trim_matches('"').to_owned());
                let number = kinds
                    .iter()
                    .find(|(k, _)| k == number)
                    .map(|&(_, n)| n)
                    .unwrap_or_else(|| number.parse().expect("a number or an EventKinds constant"));
                (number, name)
            })
            .collect()
    };
    let types: Vec<(u32, String)> = EventKind::TYPES.iter().map(|&(n, name)| (n, name.to_owned())).collect();
    assert_eq!(cases("internal static string Name(uint kind)"), types, "Models.cs EventTypes.Name");
    let reasons: Vec<(u32, String)> =
        CloseReason::ALL.iter().map(|&r| (r as u32, r.as_str().to_owned())).collect();
    assert_eq!(
        cases("internal static string CloseReasonName(uint reason)"),
        reasons,
        "Models.cs CloseReasonName"
    );
}

/// `#define NAME value` lines of the header whose name starts with `prefix`.
fn header_constants(header: &str, prefix: &str) -> Vec<(String, u32)> {
    header
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let (name, value) = l.split_once(' ').expect("`#define NAME value`");
            (name.to_owned(), value.trim().parse().expect("a number"))
        })
        .collect()
}

/// `PREFIX_` and the wire name in capitals, dots as underscores.
fn constant_name(prefix: &str, wire_name: &str) -> String {
    format!("{prefix}{}", wire_name.to_uppercase().replace('.', "_"))
}

#[test]
fn the_c_header_has_a_constant_for_every_event_type_and_close_reason() {
    let header = read("include/presence.h");
    let expected: Vec<(String, u32)> =
        EventKind::TYPES.iter().map(|&(n, name)| (constant_name("PRESENCE_EVENT_", name), n)).collect();
    assert_eq!(header_constants(&header, "PRESENCE_EVENT_"), expected, "include/presence.h PRESENCE_EVENT_*");
    let expected: Vec<(String, u32)> =
        CloseReason::ALL.iter().map(|&r| (constant_name("PRESENCE_CLOSE_", r.as_str()), r as u32)).collect();
    assert_eq!(header_constants(&header, "PRESENCE_CLOSE_"), expected, "include/presence.h PRESENCE_CLOSE_*");
}
