//! The pickle machine's object model: scalars inline, containers in an arena shared by
//! index (as Python shares objects), and the conversion of the arena into a [`Value`] tree.
use std::rc::Rc;

use super::pickle::{MAX_DEPTH, MAX_TREE_BYTES};
use super::tensor::{StorageRef, TensorRef};
use super::value::{Opaque, Value};

type R<T> = std::result::Result<T, String>;

/// A container in the arena.
pub(super) type NodeId = usize;

/// A stack or memo entry: scalars inline, containers by arena index (shared like Python objects).
#[derive(Debug, Clone)]
pub(super) enum Item {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Global(Rc<(String, String)>),
    Node(NodeId),
}

/// A mutable container, or an object the VM built.
#[derive(Debug)]
pub(super) enum Node {
    List(Vec<Item>),
    Tuple(Vec<Item>),
    Dict(Vec<(Item, Item)>),
    Object { class: String, args: Vec<Item>, state: Option<Item>, items: Vec<(Item, Item)>, elements: Vec<Item> },
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// Turns arena items into an owned tree, refusing cycles, excess depth and excess size.
pub(super) struct Resolver<'a> {
    pub(super) arena: &'a [Node],
    pub(super) on_path: Vec<bool>,
    pub(super) budget: usize,
}

impl Resolver<'_> {
    fn charge(&mut self, extra: usize) -> R<()> {
        let cost = std::mem::size_of::<Value>() + extra;
        self.budget = self.budget.checked_sub(cost).ok_or(format!("decoded pickle exceeds {MAX_TREE_BYTES} bytes (shared references expand too much)"))?;
        Ok(())
    }
    fn list(&mut self, items: &[Item], depth: usize) -> R<Vec<Value>> {
        items.iter().map(|i| self.value(i, depth + 1)).collect()
    }
    fn pairs(&mut self, items: &[(Item, Item)], depth: usize) -> R<Vec<(Value, Value)>> {
        items.iter().map(|(k, v)| Ok((self.value(k, depth + 1)?, self.value(v, depth + 1)?))).collect()
    }
    pub(super) fn value(&mut self, item: &Item, depth: usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(format!("pickle nests deeper than {MAX_DEPTH} levels"));
        }
        let extra = match item {
            Item::Str(s) => s.len(),
            Item::Bytes(b) | Item::BigInt(b) => b.len(),
            _ => 0,
        };
        self.charge(extra)?;
        Ok(match item {
            Item::None => Value::None,
            Item::Bool(b) => Value::Bool(*b),
            Item::Int(i) => Value::Int(*i),
            Item::BigInt(b) => Value::BigInt(b.to_vec()),
            Item::Float(f) => Value::Float(*f),
            Item::Str(s) => Value::Str(s.to_string()),
            Item::Bytes(b) => Value::Bytes(b.to_vec()),
            Item::Global(g) => Value::Global { module: g.0.clone(), name: g.1.clone() },
            Item::Node(id) => {
                let id = *id;
                if self.on_path[id] {
                    return Err("self-referencing structure (a container holds itself)".into());
                }
                self.on_path[id] = true;
                let arena = self.arena;
                let v = match &arena[id] {
                    Node::List(v) => Value::List(self.list(v, depth)?),
                    Node::Tuple(v) => Value::Tuple(self.list(v, depth)?),
                    Node::Dict(v) => Value::Dict(self.pairs(v, depth)?),
                    Node::Storage(s) => return Err(format!("storage `{}` used outside a tensor", s.key)),
                    Node::Tensor(t) => Value::Tensor(t.clone()),
                    Node::Object { class, args, state, items, elements } => Value::Object(Box::new(Opaque {
                        class: class.clone(),
                        args: self.list(args, depth)?,
                        state: state.as_ref().map(|s| self.value(s, depth + 1)).transpose()?,
                        items: self.pairs(items, depth)?,
                        elements: self.list(elements, depth)?,
                    })),
                };
                self.on_path[id] = false;
                v
            }
        })
    }
}
