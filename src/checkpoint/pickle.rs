//! A pickle reader (protocols 0–5, the opcodes `torch.save` and `torch.jit.save` emit) that
//! decodes data without executing it: `REDUCE`/`NEWOBJ` of a class it does not know give an
//! opaque [`Value::Object`]. Containers live in an arena so memo references share them as
//! Python does; the arena is turned into a [`Value`] tree at `STOP`, where self-references
//! and nesting deeper than [`MAX_DEPTH`] are errors and the total size is bounded.
use std::collections::HashMap;
use std::rc::Rc;

use super::arena::{Item, Node, Resolver};
use super::tensor::{StorageRef, TensorRef};
use super::value::Value;

/// Deepest nesting accepted (real checkpoints nest under 20 levels; this keeps the
/// recursive tree building well inside a 2 MiB thread stack).
pub const MAX_DEPTH: usize = 200;
/// Most memo entries accepted.
pub const MAX_MEMO: usize = 1 << 24;
/// Budget for the decoded tree, in bytes (values plus string contents).
pub const MAX_TREE_BYTES: usize = 1 << 30;

/// The pickle virtual machine over one byte buffer.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u32, Item>,
    arena: Vec<Node>,
}

/// Decodes one pickle. Errors name the byte offset and what was wrong there.
pub fn parse(data: &[u8]) -> std::result::Result<Value, String> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), arena: Vec::new() };
    let top = m.run().map_err(|e| format!("pickle byte {}: {e}", m.pos.saturating_sub(1)))?;
    Resolver { arena: &m.arena, on_path: vec![false; m.arena.len()], budget: MAX_TREE_BYTES }.value(&top, 0)
}

type R<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated pickle")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }
    fn len32(&mut self) -> R<usize> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }
    fn len64(&mut self) -> R<usize> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| "length overflows".into())
    }
    fn line(&mut self) -> R<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("unterminated text argument")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "text argument is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }
    fn pop(&mut self) -> R<Item> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("stack underflow (pop across a MARK)".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }
    fn top(&self) -> R<&Item> {
        self.stack.last().ok_or_else(|| "stack underflow".into())
    }
    fn pop_mark(&mut self) -> R<Vec<Item>> {
        let m = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }
    fn node(&mut self, n: Node) -> Item {
        self.arena.push(n);
        Item::Node(self.arena.len() - 1)
    }
    fn put(&mut self, key: u32) -> R<()> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(format!("more than {MAX_MEMO} memo entries"));
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn get(&mut self, key: u32) -> R<()> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| format!("memo key {key} was never stored"))?;
        self.stack.push(v);
        Ok(())
    }
    fn node_mut(&mut self, item: &Item) -> R<&mut Node> {
        match item {
            Item::Node(id) => Ok(&mut self.arena[*id]),
            other => Err(format!("expected a container, found {other:?}")),
        }
    }
    fn extend_list(&mut self, items: Vec<Item>) -> R<()> {
        let target = self.top()?.clone();
        match self.node_mut(&target)? {
            Node::List(v) | Node::Object { elements: v, .. } => v.extend(items),
            _ => return Err("APPEND to something that is not a list".into()),
        }
        Ok(())
    }
    fn extend_dict(&mut self, flat: Vec<Item>) -> R<()> {
        if !flat.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        let target = self.top()?.clone();
        let mut it = flat.into_iter();
        let pairs = std::iter::from_fn(|| Some((it.next()?, it.next()?)));
        match self.node_mut(&target)? {
            Node::Dict(v) | Node::Object { items: v, .. } => v.extend(pairs),
            _ => return Err("SETITEM on something that is not a dict".into()),
        }
        Ok(())
    }
    fn tuple_items(&self, item: &Item) -> R<Vec<Item>> {
        match item {
            Item::Node(id) => match &self.arena[*id] {
                Node::Tuple(v) | Node::List(v) => Ok(v.clone()),
                _ => Err("expected an argument tuple".into()),
            },
            _ => Err("expected an argument tuple".into()),
        }
    }
    fn int_of(&self, item: &Item, what: &str) -> R<i64> {
        match item {
            Item::Int(i) => Ok(*i),
            Item::Bool(b) => Ok(*b as i64),
            _ => Err(format!("{what}: expected an int")),
        }
    }
    fn ints_of(&self, item: &Item, what: &str) -> R<Vec<i64>> {
        self.tuple_items(item)?.iter().map(|i| self.int_of(i, what)).collect()
    }
    fn str_of(item: &Item, what: &str) -> R<String> {
        match item {
            Item::Str(s) => Ok(s.to_string()),
            _ => Err(format!("{what}: expected a str")),
        }
    }

    /// `BINPERSID`: torch's `('storage', torch.XStorage, key, location, numel)`.
    fn persistent(&mut self, pid: Item) -> R<Item> {
        let t = self.tuple_items(&pid)?;
        let [tag, ty, key, location, numel] = t.as_slice() else { return Err("persistent id is not a 5-tuple".into()) };
        if !matches!(tag, Item::Str(s) if &**s == "storage") {
            return Err("persistent id is not a ('storage', ...) tuple".into());
        }
        let Item::Global(g) = ty else { return Err("storage type is not a class".into()) };
        let numel = u64::try_from(self.int_of(numel, "storage numel")?).map_err(|_| "negative storage numel")?;
        let storage = StorageRef::new(&g.0, &g.1, Self::str_of(key, "storage key")?, Self::str_of(location, "storage location")?, numel)?;
        Ok(self.node(Node::Storage(storage)))
    }

    /// `REDUCE`: the few torch/collections callables understood; anything else stays opaque.
    fn reduce(&mut self, callable: Item, args: Item) -> R<Item> {
        let Item::Global(g) = &callable else { return Err("REDUCE of something that is not a class or function".into()) };
        let a = self.tuple_items(&args)?;
        match (g.0.as_str(), g.1.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                let [storage, offset, size, stride, ..] = a.as_slice() else { return Err(format!("{}: too few arguments", g.1)) };
                let Item::Node(sid) = storage else { return Err("tensor storage is not a persistent storage".into()) };
                let Node::Storage(s) = &self.arena[*sid] else { return Err("tensor storage is not a persistent storage".into()) };
                let t = TensorRef::new(s.clone(), self.int_of(offset, "storage offset")?, self.ints_of(size, "size")?, self.ints_of(stride, "stride")?)?;
                Ok(self.node(Node::Tensor(t)))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                a.into_iter().next().ok_or_else(|| "_rebuild_parameter without data".into())
            }
            ("collections", "OrderedDict") => {
                let mut pairs = Vec::new();
                if let Some(init) = a.first() {
                    for p in self.tuple_items(init)? {
                        let kv = self.tuple_items(&p)?;
                        let [k, v] = kv.as_slice() else { return Err("OrderedDict item is not a pair".into()) };
                        pairs.push((k.clone(), v.clone()));
                    }
                }
                Ok(self.node(Node::Dict(pairs)))
            }
            (module, name) => {
                let class = format!("{module}.{name}");
                Ok(self.node(Node::Object { class, args: a, state: None, items: Vec::new(), elements: Vec::new() }))
            }
        }
    }

    fn build(&mut self, state: Item) -> R<()> {
        let target = self.top()?.clone();
        match self.node_mut(&target)? {
            Node::Object { state: s, .. } => *s = Some(state),
            // OrderedDict's instance attributes (torch's `_metadata`): not data, dropped
            Node::Dict(_) => {}
            _ => return Err("BUILD on something that is not an object".into()),
        }
        Ok(())
    }

    fn run(&mut self) -> R<Item> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Item::None),
                0x88 => self.stack.push(Item::Bool(true)),
                0x89 => self.stack.push(Item::Bool(false)),
                b'J' | b'K' | b'M' => {
                    let v = match op {
                        b'J' => i32::from_le_bytes(self.le()?) as i64,
                        b'K' => self.u8()? as i64,
                        _ => u16::from_le_bytes(self.le()?) as i64,
                    };
                    self.stack.push(Item::Int(v));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.len32()? };
                    let b = self.take(n)?;
                    self.stack.push(long_le(b));
                }
                b'I' | b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    let v = match s {
                        "00" => Item::Bool(false),
                        "01" => Item::Bool(true),
                        _ => Item::Int(s.parse().map_err(|_| format!("bad integer literal {s:?}"))?),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.stack.push(Item::Float(v));
                }
                b'F' => {
                    let s = self.line()?;
                    self.stack.push(Item::Float(s.parse().map_err(|_| format!("bad float literal {s:?}"))?));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len32()?,
                        0x8c => self.u8()? as usize,
                        _ => self.len64()?,
                    };
                    let s = std::str::from_utf8(self.take(n)?).map_err(|_| "string is not UTF-8")?;
                    self.stack.push(Item::Str(s.into()));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' { self.len32()? } else { self.u8()? as usize };
                    // Python 2 str: decoded as latin-1, as torch.load's default encoding does
                    let s: String = self.take(n)?.iter().map(|&b| b as char).collect();
                    self.stack.push(Item::Str(s.into()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len32()?,
                        b'C' => self.u8()? as usize,
                        _ => self.len64()?,
                    };
                    let b = self.take(n)?;
                    self.stack.push(Item::Bytes(b.into()));
                }
                b']' => {
                    let n = self.node(Node::List(Vec::new()));
                    self.stack.push(n)
                }
                b'}' => {
                    let n = self.node(Node::Dict(Vec::new()));
                    self.stack.push(n)
                }
                b')' => {
                    let n = self.node(Node::Tuple(Vec::new()));
                    self.stack.push(n)
                }
                0x8f => {
                    let n = self.node(Node::List(Vec::new()));
                    self.stack.push(n)
                }
                b't' | b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    let n = self.node(if op == b't' { Node::Tuple(items) } else { Node::List(items) });
                    self.stack.push(n);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                        return Err("stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let t = self.node(Node::Tuple(items));
                    self.stack.push(t);
                }
                b'd' => {
                    let flat = self.pop_mark()?;
                    let d = self.node(Node::Dict(Vec::new()));
                    self.stack.push(d);
                    self.extend_dict(flat)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![k, v])?;
                }
                b'u' => {
                    let flat = self.pop_mark()?;
                    self.extend_dict(flat)?;
                }
                b'c' => {
                    let (module, name) = (self.line()?.to_string(), self.line()?.to_string());
                    self.stack.push(Item::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = Self::str_of(&self.pop()?, "STACK_GLOBAL name")?;
                    let module = Self::str_of(&self.pop()?, "STACK_GLOBAL module")?;
                    self.stack.push(Item::Global(Rc::new((module, name))));
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = self.reduce(class, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    self.build(state)?;
                }
                b'p' => {
                    let key = self.line()?.parse().map_err(|_| "bad PUT key")?;
                    self.put(key)?;
                }
                b'q' => {
                    let key = self.u8()? as u32;
                    self.put(key)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.put(key)?;
                }
                0x94 => {
                    let key = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                    self.put(key)?;
                }
                b'g' => {
                    let key = self.line()?.parse().map_err(|_| "bad GET key")?;
                    self.get(key)?;
                }
                b'h' => {
                    let key = self.u8()? as u32;
                    self.get(key)?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.get(key)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent(pid)?;
                    self.stack.push(s);
                }
                other => return Err(format!("unsupported opcode 0x{other:02x}")),
            }
        }
    }
}

/// `LONG1`/`LONG4` payload: little-endian two's complement.
fn long_le(b: &[u8]) -> Item {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
        let mut w = [fill; 8];
        w[..b.len()].copy_from_slice(b);
        Item::Int(i64::from_le_bytes(w))
    } else {
        Item::BigInt(b.into())
    }
}
