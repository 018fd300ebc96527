//! A query's answer in the one format that both `sluice nexmark run --output`
//! and `nexmark-handwritten --print` write, so that any answer can be checked
//! against the other with `cmp`: each result row is a JSON array of its leaf
//! values in field order (names and nesting dropped, since the two programs
//! name their row types differently), the changelog is applied (a `-U` or
//! `-D` row takes back one equal earlier row; an upsert row replaces the
//! earlier row of its key), and the rows are sorted, one per line.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::fmt;
use std::io::Write;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value;
use sluice_api::{DataStream, StreamExecutionEnvironment};
use sluice_connectors::{CollectHandle, CollectSink};
use sluice_core::{Data, Result, SluiceError};

use crate::{events, NexmarkInput, Query, QuerySink};

/// Runs `query` over `input` to the end, at `parallelism`, and returns its answer.
pub fn run(query: Query, input: &NexmarkInput, parallelism: usize) -> Result<Answer> {
    if query.is_processing_time() {
        return Err(SluiceError::Config(format!(
            "{query} follows processing time: its answer differs from run to run"
        )));
    }
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    let mut sink = AnswerSink { rows: None };
    query.add_to(&events(&env, input)?, &mut sink);
    env.execute(&format!("nexmark {query} answer"))?;
    let mut answer = Answer::new(query.rows());
    for row in sink.rows.expect("the query attached its sink").take() {
        answer.apply(row.map_err(SluiceError::Serialization)?)?;
    }
    Ok(answer)
}

/// Hands a query's results, flattened in its subtasks, to a collecting sink.
struct AnswerSink {
    rows: Option<CollectHandle<std::result::Result<Vec<Value>, String>>>,
}

impl QuerySink for AnswerSink {
    fn sink<T: Data>(&mut self, results: DataStream<T>) {
        let (sink, handle) = CollectSink::new();
        let rows = results.map(|row| flatten_row(&row).map_err(|e| e.to_string()));
        drop(rows.name("Flatten rows").sink_to(sink).name("Sink: answer"));
        self.rows = Some(handle);
    }
}

/// A result row as a JSON array of its leaf values, in field order.
pub fn flatten_row<T: Serialize>(row: &T) -> Result<Vec<Value>> {
    // Through JSON text, which keeps fields in declaration order (a
    // `serde_json::Value` object would sort them by name).
    let text = serde_json::to_vec(row).map_err(|e| SluiceError::Serialization(e.to_string()))?;
    let mut leaves = Vec::new();
    Leaves(&mut leaves)
        .deserialize(&mut serde_json::Deserializer::from_slice(&text))
        .map_err(|e| SluiceError::Serialization(e.to_string()))?;
    Ok(leaves)
}

/// How the rows a query emits make up its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Every row is part of the answer.
    Inserts,
    /// Rows are changes, flattened with their kind first (`Insert`,
    /// `UpdateBefore`, `UpdateAfter`, `Delete`), as `Change { kind, row }`
    /// serializes.
    Changelog,
    /// Each row replaces the earlier row with the same first `key_fields` values.
    Upserts {
        /// How many leading fields make the key.
        key_fields: usize,
    },
}

/// A query's answer: the rows it emitted, with the changelog applied.
#[derive(Debug)]
pub struct Answer {
    kind: Rows,
    /// Each row's JSON text and how many times it is in the answer.
    rows: BTreeMap<String, u64>,
    /// For upserts: each key's text, and the text of its latest row.
    latest: HashMap<String, String>,
}

impl Answer {
    /// An empty answer of rows of `kind`.
    pub fn new(kind: Rows) -> Self {
        Self { kind, rows: BTreeMap::new(), latest: HashMap::new() }
    }

    /// Adds one emitted row, flattened by [`flatten_row`].
    pub fn apply(&mut self, mut leaves: Vec<Value>) -> Result<()> {
        let retract = match self.kind {
            Rows::Inserts => false,
            Rows::Changelog => {
                let kind = if leaves.is_empty() { Value::Null } else { leaves.remove(0) };
                match kind.as_str() {
                    Some("Insert" | "UpdateAfter") => false,
                    Some("UpdateBefore" | "Delete") => true,
                    _ => {
                        return Err(SluiceError::Internal(format!(
                            "a changelog row starts with {kind}, not a row kind"
                        )))
                    }
                }
            }
            Rows::Upserts { key_fields } => {
                let key = Value::Array(leaves[..key_fields.min(leaves.len())].to_vec()).to_string();
                let text = Value::Array(leaves).to_string();
                if let Some(old) = self.latest.insert(key, text.clone()) {
                    self.take_back(&old)?;
                }
                *self.rows.entry(text).or_default() += 1;
                return Ok(());
            }
        };
        let text = Value::Array(leaves).to_string();
        if retract {
            self.take_back(&text)
        } else {
            *self.rows.entry(text).or_default() += 1;
            Ok(())
        }
    }

    fn take_back(&mut self, text: &str) -> Result<()> {
        match self.rows.get_mut(text) {
            Some(1) => {
                self.rows.remove(text);
            }
            Some(n) => *n -= 1,
            None => {
                return Err(SluiceError::Internal(format!(
                    "the changelog takes back {text}, which is not in the answer"
                )))
            }
        }
        Ok(())
    }

    /// Number of rows in the answer.
    pub fn len(&self) -> u64 {
        self.rows.values().sum()
    }

    /// Whether the answer has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the rows, sorted, one per line.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        for (row, &count) in &self.rows {
            for _ in 0..count {
                writeln!(out, "{row}")?;
            }
        }
        Ok(())
    }
}

/// Collects the leaf values of whatever it deserializes, in order.
struct Leaves<'a>(&'a mut Vec<Value>);

impl<'de> DeserializeSeed<'de> for Leaves<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Leaves<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<(), E> {
        self.0.push(Value::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<(), E> {
        self.0.push(v.into());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<(), E> {
        // Ids are u64 in one program and i64 in the other: one form for both.
        self.0.push(i64::try_from(v).map_or(v.into(), Value::from));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<(), E> {
        self.0.push(v.into());
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<(), E> {
        self.0.push(v.into());
        Ok(())
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        self.0.push(Value::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Leaves(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value_seed(Leaves(&mut *self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner {
        z: &'static str,
        a: f64,
    }

    #[derive(Serialize)]
    struct Row {
        id: u64,
        inner: Inner,
        tags: Vec<i32>,
        missing: Option<i32>,
    }

    #[test]
    fn a_row_flattens_to_its_leaves_in_field_order() {
        let row = Row { id: 7, inner: Inner { z: "x", a: 0.5 }, tags: vec![1, 2], missing: None };
        let leaves = flatten_row(&row).unwrap();
        assert_eq!(Value::Array(leaves).to_string(), r#"[7,"x",0.5,1,2,null]"#);
        // A tuple of the same values flattens alike.
        let tuple = (7i64, ("x", 0.5), [1, 2], None::<i32>);
        assert_eq!(flatten_row(&tuple).unwrap(), flatten_row(&row).unwrap());
    }

    #[test]
    fn the_changelog_is_applied_and_rows_are_sorted() {
        let mut answer = Answer::new(Rows::Changelog);
        let change = |kind: &str, id: i64| flatten_row(&(kind, id, "bid")).unwrap();
        for (kind, id) in [("Insert", 2), ("Insert", 1), ("UpdateBefore", 2), ("UpdateAfter", 3)] {
            answer.apply(change(kind, id)).unwrap();
        }
        answer.apply(change("Insert", 1)).unwrap();
        answer.apply(change("Delete", 3)).unwrap();
        let mut out = Vec::new();
        answer.write_to(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[1,\"bid\"]\n[1,\"bid\"]\n");
        assert_eq!(answer.len(), 2);
    }

    #[test]
    fn an_upsert_replaces_the_row_of_its_key() {
        let mut answer = Answer::new(Rows::Upserts { key_fields: 1 });
        for (category, average) in [(10, 1.5), (11, 2.0), (10, 3.0), (10, 1.5)] {
            answer.apply(flatten_row(&(category, average)).unwrap()).unwrap();
        }
        let mut out = Vec::new();
        answer.write_to(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[10,1.5]\n[11,2.0]\n");
    }

    #[test]
    fn taking_back_a_row_never_emitted_is_an_error() {
        let mut answer = Answer::new(Rows::Changelog);
        let err = answer.apply(flatten_row(&("Delete", 9)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("[9]"), "{err}");
        let err = answer.apply(flatten_row(&(1, 2)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not a row kind"), "{err}");
    }
}
