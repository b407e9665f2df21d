//! Where each node of a YAML stream sits in the file.
//!
//! serde's YAML deserializer reports a position only for the first syntax error. To point
//! at every error that validation finds, the text is walked a second time with a
//! span-reporting event parser, recording the position of every key and value under its
//! JSON pointer.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};

use crate::diagnostic::{FieldPath, Position};

/// The position of a node and, for a mapping entry, of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePosition {
    pub key: Option<Position>,
    pub value: Position,
    /// Whether the value is a mapping or a list.
    pub collection: bool,
}

/// Positions of the nodes of one document, keyed by JSON pointer.
#[derive(Clone, Debug, Default)]
pub struct DocumentPositions {
    nodes: HashMap<String, NodePosition>,
    start: Option<Position>,
    duplicates: Vec<(FieldPath, Position)>,
}

impl DocumentPositions {
    /// Where the document's content starts.
    pub fn start(&self) -> Position {
        self.start.unwrap_or(Position::START)
    }

    /// Keys that appear twice in the same mapping: the path and the second occurrence.
    pub fn duplicate_keys(&self) -> &[(FieldPath, Position)] {
        &self.duplicates
    }

    pub fn get(&self, path: &FieldPath) -> Option<NodePosition> {
        self.nodes.get(&path.pointer()).copied()
    }

    /// The best place to point at for an error about the value at `path`: the value itself,
    /// or else the closest ancestor that exists in the file.
    pub fn value_or_ancestor(&self, path: &FieldPath) -> Position {
        let mut current = Some(path.clone());
        while let Some(p) = current {
            if let Some(node) = self.get(&p) {
                return node.value;
            }
            current = p.parent();
        }
        self.start()
    }

    /// For an error about a key (unknown or misplaced field): the key's position.
    pub fn key_or_value(&self, path: &FieldPath) -> Position {
        match self.get(path) {
            Some(NodePosition { key: Some(key), .. }) => key,
            _ => self.value_or_ancestor(path),
        }
    }

    /// For an error about a whole value: a scalar's own position, or the key that opens a
    /// mapping or list (its first entry may be lines away from what the error is about).
    pub fn best(&self, path: &FieldPath) -> Position {
        match self.get(path) {
            Some(NodePosition {
                key: Some(key),
                collection: true,
                ..
            }) => key,
            Some(node) => node.value,
            None => self.value_or_ancestor(path),
        }
    }

    /// For a field missing from the mapping at `parent`: the key that opens that mapping,
    /// or the document start for the top level.
    pub fn missing_in(&self, parent: &FieldPath) -> Position {
        if parent.is_root() {
            return self.start();
        }
        self.key_or_value(parent)
    }
}

/// Walks `text` and returns the positions of each document in order. Parsing stops at the
/// first syntax error; the documents before it are still returned.
pub fn index(text: &str) -> Vec<DocumentPositions> {
    let mut indexer = Indexer::default();
    // A syntax error is reported by the YAML deserializer with its own position; here it
    // only ends the walk.
    let _ = Parser::new_from_str(text).load(&mut indexer, true);
    if let Some(doc) = indexer.current.take() {
        indexer.documents.push(doc);
    }
    indexer.documents
}

enum Frame {
    Mapping {
        path: FieldPath,
        pending_key: Option<(String, Position)>,
    },
    Sequence {
        path: FieldPath,
        next: usize,
    },
}

#[derive(Default)]
struct Indexer {
    documents: Vec<DocumentPositions>,
    current: Option<DocumentPositions>,
    stack: Vec<Frame>,
    /// Depth of collections opened as mapping keys; everything inside them is skipped.
    skipping: usize,
}

fn position(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

enum Role {
    Key,
    Value(FieldPath, Option<Position>),
}

impl Indexer {
    fn role(&mut self) -> Role {
        match self.stack.last_mut() {
            None => Role::Value(FieldPath::root(), None),
            Some(Frame::Mapping {
                path, pending_key, ..
            }) => match pending_key.take() {
                None => Role::Key,
                Some((key, at)) => Role::Value(path.key(key), Some(at)),
            },
            Some(Frame::Sequence { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Role::Value(p, None)
            }
        }
    }

    fn record(
        &mut self,
        path: &FieldPath,
        key: Option<Position>,
        value: Position,
        collection: bool,
    ) {
        let doc = self.current.get_or_insert_with(DocumentPositions::default);
        doc.start.get_or_insert(value);
        let previous = doc.nodes.insert(
            path.pointer(),
            NodePosition {
                key,
                value,
                collection,
            },
        );
        if let (Some(_), Some(key)) = (previous, key) {
            doc.duplicates.push((path.clone(), key));
        }
    }

    fn set_key(&mut self, key: String, at: Position) {
        if let Some(Frame::Mapping { pending_key, .. }) = self.stack.last_mut() {
            *pending_key = Some((key, at));
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Indexer {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let at = position(&span);
        if self.skipping > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skipping += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.skipping -= 1;
                    if self.skipping == 0 {
                        // The complex key is done; its value follows under a placeholder.
                        self.set_key("<complex key>".into(), at);
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::DocumentStart(_) => {
                if let Some(doc) = self.current.take() {
                    self.documents.push(doc);
                }
                self.current = Some(DocumentPositions::default());
                self.stack.clear();
            }
            Event::DocumentEnd => {
                if let Some(doc) = self.current.take() {
                    self.documents.push(doc);
                }
            }
            Event::Scalar(value, ..) => match self.role() {
                Role::Key => self.set_key(value.into_owned(), at),
                Role::Value(path, key) => self.record(&path, key, at, false),
            },
            Event::Alias(_) => match self.role() {
                Role::Key => self.set_key("<alias>".into(), at),
                Role::Value(path, key) => self.record(&path, key, at, false),
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => match self.role() {
                Role::Key => self.skipping = 1,
                Role::Value(path, key) => {
                    self.record(&path, key, at, true);
                    let frame = if matches!(ev, Event::MappingStart(..)) {
                        Frame::Mapping {
                            path,
                            pending_key: None,
                        }
                    } else {
                        Frame::Sequence { path, next: 0 }
                    };
                    self.stack.push(frame);
                }
            },
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn records_keys_and_values_across_documents() {
        let text = "\
kind: BackupPolicy
spec:
  schedule: \"0 3 * * *\"
  targets:
    stacks: [a, b]
---
kind: Archive
metadata:
  labels:
    holdfast.dev/backup: \"true\"
";
        let docs = index(text);
        assert_eq!(docs.len(), 2);
        let schedule = FieldPath::root().key("spec").key("schedule");
        assert_eq!(docs[0].get(&schedule).unwrap().key, Some(at(3, 3)));
        assert_eq!(docs[0].get(&schedule).unwrap().value, at(3, 13));
        let b = FieldPath::root()
            .key("spec")
            .key("targets")
            .key("stacks")
            .index(1);
        assert_eq!(docs[0].get(&b).unwrap().value, at(5, 17));
        assert_eq!(docs[0].start(), at(1, 1));
        let label = FieldPath::root()
            .key("metadata")
            .key("labels")
            .key("holdfast.dev/backup");
        assert_eq!(docs[1].get(&label).unwrap().key, Some(at(10, 5)));
        assert_eq!(docs[1].start(), at(7, 1));
    }

    #[test]
    fn missing_fields_point_at_their_parent() {
        let docs = index("a: 1\nspec:\n  x: 2\n");
        let spec = FieldPath::root().key("spec");
        assert_eq!(docs[0].missing_in(&spec), at(2, 1));
        assert_eq!(docs[0].missing_in(&FieldPath::root()), at(1, 1));
        assert_eq!(
            docs[0].value_or_ancestor(&spec.key("nope").key("deeper")),
            at(3, 3)
        );
    }

    #[test]
    fn complex_keys_do_not_derail_the_walk() {
        let docs = index("? [a, b]\n: 1\nafter: 2\n");
        assert_eq!(
            docs[0].get(&FieldPath::root().key("after")).unwrap().key,
            Some(at(3, 1))
        );
    }

    #[test]
    fn keeps_documents_before_a_syntax_error() {
        let docs = index("a: 1\n---\nb: [\n");
        assert!(!docs.is_empty());
        assert_eq!(
            docs[0].get(&FieldPath::root().key("a")).unwrap().value,
            at(1, 4)
        );
    }
}
