//! A component's exported functions as tools: each one's name, signature and JSON Schema,
//! and its arguments and results between JSON and component values.
//!
//! A value crosses as JSON this way: `bool` as a boolean; integers as integers (checked
//! against their range); `f32`/`f64` as numbers (results that are not finite as the strings
//! `"NaN"`, `"inf"`, `"-inf"`); `char` and `string` as strings; `list` and `tuple` as arrays;
//! `record` as an object of its fields; `enum` as its case's name; `flags` as an array of
//! the names set; `option` as the value or `null`; `variant` as the case's name when it
//! carries nothing, else `{"CASE": value}`; `result` as `{"ok": value}` or `{"err": value}`.
//! A function taking or giving resources, maps, streams or futures is not offered.

use serde_json::{json, Map, Value};
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Type, Val};
use wasmtime::Engine;

/// A function a component exports, callable with JSON arguments.
#[derive(Clone, Debug)]
pub struct Function {
    /// Its tool name: the function's, after its interface's short name (`notes.search`) when
    /// an interface exports it.
    pub name: String,
    /// Its signature in WIT (`word-count: func(text: string) -> u32`).
    pub signature: String,
    /// The JSON Schema of its arguments: an object with one property a parameter, all required.
    pub input_schema: Value,
    /// The interface that exports it (its full name), if one does.
    pub(crate) interface: Option<String>,
    /// The function's own name.
    pub(crate) export: String,
    params: Vec<(String, Type)>,
    result: Option<Type>,
}

/// What a call gave: the function's result as JSON, and whether it was an error (a
/// function returning `result<_, E>` that returned `err`).
#[derive(Clone, Debug, PartialEq)]
pub struct Returned {
    /// The result (`null` for a function returning nothing); for `result<T, E>`, the `T`
    /// or the `E` alone.
    pub value: Value,
    /// Whether the function returned `err`.
    pub error: bool,
}

/// The functions `exports` offers as tools, and a reason for each exported function left
/// out. WASI's own interfaces (`wasi:cli/run`, `wasi:http/incoming-handler`) are not tools.
pub(crate) fn functions<'a>(
    engine: &Engine,
    exports: impl Iterator<Item = (&'a str, ComponentItem)>,
) -> (Vec<Function>, Vec<String>) {
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    for (name, item) in exports {
        match item {
            ComponentItem::ComponentFunc(func) => match function(None, name, name, &func) {
                Ok(function) => found.push(function),
                Err(why) => skipped.push(format!("`{name}`: {why}")),
            },
            ComponentItem::ComponentInstance(instance) if !name.starts_with("wasi:") => {
                let short = name
                    .rsplit_once('/')
                    .map_or(name, |(_, short)| short)
                    .split('@')
                    .next()
                    .unwrap_or(name);
                for (export, item) in instance.exports(engine) {
                    let ComponentItem::ComponentFunc(func) = item.ty else {
                        continue;
                    };
                    let tool = format!("{short}.{export}");
                    match function(Some(name), export, &tool, &func) {
                        Ok(function) => found.push(function),
                        Err(why) => skipped.push(format!("`{name}#{export}`: {why}")),
                    }
                }
            }
            _ => {}
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    // Two interfaces of one short name would give two tools of one name: the first is kept.
    let mut seen = std::collections::HashSet::new();
    found.retain(|function| {
        let first = seen.insert(function.name.clone());
        if !first {
            skipped.push(format!(
                "`{}`: another export gives a tool of this name",
                function.name
            ));
        }
        first
    });
    (found, skipped)
}

fn function(
    interface: Option<&str>,
    export: &str,
    name: &str,
    func: &ComponentFunc,
) -> Result<Function, String> {
    if func.async_() {
        return Err("an async function".into());
    }
    // A few bytes of types can describe a schema of millions of nodes: counted first.
    let mut budget = MAX_TYPE_NODES;
    for ty in func.params().map(|(_, ty)| ty).chain(func.results()) {
        if !fits(&ty, &mut budget) {
            return Err(format!(
                "its types are too large to describe (over {MAX_TYPE_NODES} parts)"
            ));
        }
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut params = Vec::new();
    let mut written = Vec::new();
    for (param, ty) in func.params() {
        properties.insert(param.to_owned(), schema(&ty)?);
        required.push(json!(param));
        written.push(format!("{param}: {}", wit(&ty)));
        params.push((param.to_owned(), ty));
    }
    let mut results = func.results();
    let result = results.next();
    if results.next().is_some() {
        return Err("more than one result".into());
    }
    if let Some(ty) = &result {
        schema(ty)?;
    }
    let signature = format!(
        "{export}: func({}){}",
        written.join(", "),
        result
            .as_ref()
            .map(|ty| format!(" -> {}", wit(ty)))
            .unwrap_or_default()
    );
    Ok(Function {
        name: name.to_owned(),
        signature,
        input_schema: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
        interface: interface.map(str::to_owned),
        export: export.to_owned(),
        params,
        result,
    })
}

/// The type as WIT writes it.
fn wit(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", wit(&list.ty())),
        Type::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple
                .types()
                .map(|t| wit(&t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Record(record) => format!(
            "record {{ {} }}",
            record
                .fields()
                .map(|f| format!("{}: {}", f.name, wit(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(variant) => format!(
            "variant {{ {} }}",
            variant
                .cases()
                .map(|c| match c.ty {
                    Some(ty) => format!("{}({})", c.name, wit(&ty)),
                    None => c.name.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Option(option) => format!("option<{}>", wit(&option.ty())),
        Type::Result(result) => {
            let side = |ty: Option<Type>| ty.map_or("_".to_owned(), |t| wit(&t));
            format!("result<{}, {}>", side(result.ok()), side(result.err()))
        }
        _ => "(unsupported)".into(),
    }
}

/// The deepest type a tool's schema is written for.
const MAX_DEPTH: usize = 32;

/// The most parts (each type a record, list or case holds) a function's parameters and
/// result may have, counted as written out.
const MAX_TYPE_NODES: usize = 5_000;

/// Whether `ty`, written out whole, takes at most `budget` parts (taken from it); stops
/// counting as soon as it does not.
fn fits(ty: &Type, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match ty {
        Type::List(list) => fits(&list.ty(), budget),
        Type::Option(option) => fits(&option.ty(), budget),
        Type::Tuple(tuple) => tuple.types().all(|t| fits(&t, budget)),
        Type::Record(record) => record.fields().all(|f| fits(&f.ty, budget)),
        Type::Variant(variant) => variant
            .cases()
            .all(|c| c.ty.is_none_or(|t| fits(&t, budget))),
        Type::Result(result) => {
            result.ok().is_none_or(|t| fits(&t, budget))
                && result.err().is_none_or(|t| fits(&t, budget))
        }
        Type::Enum(e) => {
            let names = e.names().len();
            *budget = budget.saturating_sub(names);
            *budget > 0
        }
        Type::Flags(f) => {
            let names = f.names().len();
            *budget = budget.saturating_sub(names);
            *budget > 0
        }
        _ => true,
    }
}

/// The JSON Schema of `ty`'s JSON form; an error for a type a tool cannot take or give.
fn schema(ty: &Type) -> Result<Value, String> {
    schema_at(ty, 0)
}

fn integer(min: i128, max: i128) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max })
}

fn schema_at(ty: &Type, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("a type nested over {MAX_DEPTH} levels"));
    }
    let inner = |ty: &Type| schema_at(ty, depth + 1);
    Ok(match ty {
        Type::Bool => json!({ "type": "boolean" }),
        Type::S8 => integer(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => integer(0, u8::MAX.into()),
        Type::S16 => integer(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => integer(0, u16::MAX.into()),
        Type::S32 => integer(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => integer(0, u32::MAX.into()),
        Type::S64 => integer(i64::MIN.into(), i64::MAX.into()),
        Type::U64 => integer(0, u64::MAX.into()),
        Type::Float32 | Type::Float64 => json!({ "type": "number" }),
        Type::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Type::String => json!({ "type": "string" }),
        Type::List(list) => json!({ "type": "array", "items": inner(&list.ty())? }),
        Type::Tuple(tuple) => {
            let items = tuple
                .types()
                .map(|t| inner(&t))
                .collect::<Result<Vec<_>, _>>()?;
            json!({
                "type": "array",
                "prefixItems": items,
                "minItems": items.len(),
                "maxItems": items.len(),
            })
        }
        Type::Record(record) => {
            let mut properties = Map::new();
            for field in record.fields() {
                properties.insert(field.name.to_owned(), inner(&field.ty)?);
            }
            let required: Vec<&String> = properties.keys().collect();
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        Type::Variant(variant) => {
            let cases = variant
                .cases()
                .map(|case| {
                    Ok(match case.ty {
                        None => json!({ "const": case.name }),
                        Some(ty) => json!({
                            "type": "object",
                            "properties": { case.name: inner(&ty)? },
                            "required": [case.name],
                            "additionalProperties": false,
                        }),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            json!({ "oneOf": cases })
        }
        Type::Enum(e) => json!({ "type": "string", "enum": e.names().collect::<Vec<_>>() }),
        Type::Flags(f) => json!({
            "type": "array",
            "items": { "type": "string", "enum": f.names().collect::<Vec<_>>() },
            "uniqueItems": true,
        }),
        Type::Option(option) => json!({ "anyOf": [inner(&option.ty())?, { "type": "null" }] }),
        Type::Result(result) => {
            let side = |name: &str, ty: Option<Type>| -> Result<Value, String> {
                let value = match ty {
                    Some(ty) => inner(&ty)?,
                    None => json!({ "type": "null" }),
                };
                Ok(json!({
                    "type": "object",
                    "properties": { name: value },
                    "required": [name],
                    "additionalProperties": false,
                }))
            };
            json!({ "oneOf": [side("ok", result.ok())?, side("err", result.err())?] })
        }
        Type::Own(_) | Type::Borrow(_) => return Err("takes or gives a resource".into()),
        Type::Map(_) => return Err("takes or gives a map".into()),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err("takes or gives a future, stream or error context".into())
        }
        Type::FixedLengthList(_) => return Err("takes or gives a fixed-length list".into()),
    })
}

/// `arguments` (a JSON object, one member a parameter) as `function`'s parameters; an
/// error naming the first that does not fit.
pub(crate) fn arguments(function: &Function, arguments: &Value) -> Result<Vec<Val>, String> {
    let empty = Map::new();
    let given = match arguments {
        Value::Object(given) => given,
        Value::Null => &empty,
        other => {
            return Err(format!(
                "the arguments are not an object: {}",
                cordon_types::json_type(other)
            ))
        }
    };
    if let Some(unknown) = given
        .keys()
        .find(|key| !function.params.iter().any(|(name, _)| name == *key))
    {
        return Err(format!("`{}` takes no argument `{unknown}`", function.name));
    }
    function
        .params
        .iter()
        .map(|(name, ty)| {
            let value = given
                .get(name)
                .ok_or_else(|| format!("the argument `{name}` is missing"))?;
            val(ty, value, 0).map_err(|why| format!("argument `{name}`: {why}"))
        })
        .collect()
}

fn expected(what: &str, value: &Value) -> String {
    format!("expected {what}, found {}", cordon_types::json_type(value))
}

fn whole<T: TryFrom<i128>>(value: &Value, what: &str) -> Result<T, String> {
    let number = value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
        .ok_or_else(|| expected(&format!("a whole number ({what})"), value))?;
    T::try_from(number).map_err(|_| format!("{number} is out of the range of {what}"))
}

/// One argument as the value of `ty`.
fn val(ty: &Type, value: &Value, depth: usize) -> Result<Val, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested over {MAX_DEPTH} levels"));
    }
    let inner = |ty: &Type, value: &Value| val(ty, value, depth + 1);
    Ok(match ty {
        Type::Bool => Val::Bool(
            value
                .as_bool()
                .ok_or_else(|| expected("a boolean", value))?,
        ),
        Type::S8 => Val::S8(whole(value, "s8")?),
        Type::U8 => Val::U8(whole(value, "u8")?),
        Type::S16 => Val::S16(whole(value, "s16")?),
        Type::U16 => Val::U16(whole(value, "u16")?),
        Type::S32 => Val::S32(whole(value, "s32")?),
        Type::U32 => Val::U32(whole(value, "u32")?),
        Type::S64 => Val::S64(whole(value, "s64")?),
        Type::U64 => Val::U64(whole(value, "u64")?),
        #[expect(
            clippy::cast_possible_truncation,
            reason = "f32 is what the function takes"
        )]
        Type::Float32 => {
            Val::Float32(value.as_f64().ok_or_else(|| expected("a number", value))? as f32)
        }
        Type::Float64 => Val::Float64(value.as_f64().ok_or_else(|| expected("a number", value))?),
        Type::Char => {
            let text = value
                .as_str()
                .ok_or_else(|| expected("a character", value))?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(format!(
                        "expected one character, found {} ",
                        text.chars().count()
                    ))
                }
            }
        }
        Type::String => Val::String(
            value
                .as_str()
                .ok_or_else(|| expected("a string", value))?
                .to_owned(),
        ),
        Type::List(list) => {
            let items = value
                .as_array()
                .ok_or_else(|| expected("an array", value))?;
            let ty = list.ty();
            Val::List(
                items
                    .iter()
                    .map(|item| inner(&ty, item))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Tuple(tuple) => {
            let items = value
                .as_array()
                .ok_or_else(|| expected("an array", value))?;
            if items.len() != tuple.types().len() {
                return Err(format!(
                    "expected {} items, found {}",
                    tuple.types().len(),
                    items.len()
                ));
            }
            Val::Tuple(
                tuple
                    .types()
                    .zip(items)
                    .map(|(ty, item)| inner(&ty, item))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(record) => {
            let given = value
                .as_object()
                .ok_or_else(|| expected("an object", value))?;
            if let Some(unknown) = given
                .keys()
                .find(|key| !record.fields().any(|field| field.name == key.as_str()))
            {
                return Err(format!("no field `{unknown}`"));
            }
            Val::Record(
                record
                    .fields()
                    .map(|field| {
                        let value = given
                            .get(field.name)
                            .ok_or_else(|| format!("the field `{}` is missing", field.name))?;
                        let value = inner(&field.ty, value)
                            .map_err(|why| format!("field `{}`: {why}", field.name))?;
                        Ok((field.name.to_owned(), value))
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        Type::Variant(variant) => {
            let (name, payload) = tagged(value)?;
            let case = variant
                .cases()
                .find(|case| case.name == name)
                .ok_or_else(|| format!("no case `{name}`"))?;
            let payload = match (case.ty, payload) {
                (None, None) => None,
                (Some(ty), Some(payload)) => Some(Box::new(inner(&ty, payload)?)),
                (None, Some(_)) => return Err(format!("the case `{name}` carries nothing")),
                (Some(_), None) => return Err(format!("the case `{name}` carries a value")),
            };
            Val::Variant(name.to_owned(), payload)
        }
        Type::Enum(e) => {
            let name = value
                .as_str()
                .ok_or_else(|| expected("a case's name", value))?;
            if !e.names().any(|n| n == name) {
                return Err(format!("no case `{name}`"));
            }
            Val::Enum(name.to_owned())
        }
        Type::Flags(f) => {
            let items = value
                .as_array()
                .ok_or_else(|| expected("an array", value))?;
            let mut set = Vec::new();
            for item in items {
                let name = item
                    .as_str()
                    .ok_or_else(|| expected("a flag's name", item))?;
                if !f.names().any(|n| n == name) {
                    return Err(format!("no flag `{name}`"));
                }
                if !set.iter().any(|s| s == name) {
                    set.push(name.to_owned());
                }
            }
            Val::Flags(set)
        }
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            value => Val::Option(Some(Box::new(inner(&option.ty(), value)?))),
        },
        Type::Result(result) => {
            let (name, payload) = tagged(value)?;
            let side = |ty: Option<Type>| -> Result<Option<Box<Val>>, String> {
                match (ty, payload) {
                    (None, None | Some(Value::Null)) => Ok(None),
                    (Some(ty), Some(payload)) => Ok(Some(Box::new(inner(&ty, payload)?))),
                    (None, Some(_)) => Err(format!("`{name}` carries nothing")),
                    (Some(_), None) => Err(format!("`{name}` carries a value")),
                }
            };
            match name {
                "ok" => Val::Result(Ok(side(result.ok())?)),
                "err" => Val::Result(Err(side(result.err())?)),
                _ => return Err(format!("expected `ok` or `err`, found `{name}`")),
            }
        }
        _ => return Err("a type a tool cannot take".into()),
    })
}

/// A case written `"NAME"` or `{"NAME": value}`.
fn tagged(value: &Value) -> Result<(&str, Option<&Value>), String> {
    match value {
        Value::String(name) => Ok((name, None)),
        Value::Object(object) if object.len() == 1 => {
            let (name, payload) = object.iter().next().ok_or("an empty object")?;
            Ok((name, Some(payload)))
        }
        other => Err(expected("a case's name or {\"CASE\": value}", other)),
    }
}

/// The most values (each number, string, item, field) a result may have as JSON, and the
/// most bytes its strings may hold: past either it is not given back.
pub const MAX_RESULT_VALUES: usize = 200_000;

/// See [`MAX_RESULT_VALUES`].
pub const MAX_RESULT_BYTES: usize = 16 << 20;

/// What is left of a result's allowance.
struct Allowance {
    values: usize,
    bytes: usize,
}

impl Allowance {
    fn take(&mut self, bytes: usize) -> Result<(), String> {
        if self.values == 0 || self.bytes < bytes {
            return Err(format!(
                "the function's result is larger than a tool may give back \
                 ({MAX_RESULT_VALUES} values, {} MiB of text)",
                MAX_RESULT_BYTES >> 20
            ));
        }
        self.values -= 1;
        self.bytes -= bytes;
        Ok(())
    }
}

/// A result as JSON, within `allowance`.
fn json(value: &Val, allowance: &mut Allowance) -> Result<Value, String> {
    let float = |f: f64| {
        if f.is_finite() {
            json!(f)
        } else if f.is_nan() {
            json!("NaN")
        } else if f > 0.0 {
            json!("inf")
        } else {
            json!("-inf")
        }
    };
    let name_bytes = match value {
        Val::String(s) | Val::Variant(s, _) | Val::Enum(s) => s.len(),
        Val::Flags(names) => names.iter().map(String::len).sum(),
        _ => 0,
    };
    allowance.take(name_bytes)?;
    let boxed = |value: &Option<Box<Val>>, allowance: &mut Allowance| {
        value
            .as_deref()
            .map_or(Ok(Value::Null), |v| json(v, allowance))
    };
    Ok(match value {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        Val::Float32(f) => float(f64::from(*f)),
        Val::Float64(f) => float(*f),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => Value::Array(
            items
                .iter()
                .map(|item| json(item, allowance))
                .collect::<Result<_, _>>()?,
        ),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| Ok((name.clone(), json(value, allowance)?)))
                .collect::<Result<_, String>>()?,
        ),
        Val::Variant(name, None) | Val::Enum(name) => json!(name),
        Val::Variant(name, Some(payload)) => json!({ name: json(payload, allowance)? }),
        Val::Option(value) => boxed(value, allowance)?,
        Val::Result(Ok(value)) => json!({ "ok": boxed(value, allowance)? }),
        Val::Result(Err(value)) => json!({ "err": boxed(value, allowance)? }),
        Val::Flags(names) => json!(names),
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(key, value)| Ok(json!([json(key, allowance)?, json(value, allowance)?])))
                .collect::<Result<_, String>>()?,
        ),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            json!("(a handle)")
        }
    })
}

/// What a function's results give back; an error when they are too large to.
pub(crate) fn returned(results: &[Val]) -> Result<Returned, String> {
    let mut allowance = Allowance {
        values: MAX_RESULT_VALUES,
        bytes: MAX_RESULT_BYTES,
    };
    Ok(match results.first() {
        None => Returned {
            value: Value::Null,
            error: false,
        },
        Some(Val::Result(result)) => {
            let (value, error) = match result {
                Ok(value) => (value, false),
                Err(value) => (value, true),
            };
            Returned {
                value: match value.as_deref() {
                    Some(value) => json(value, &mut allowance)?,
                    None => Value::Null,
                },
                error,
            }
        }
        Some(value) => Returned {
            value: json(value, &mut allowance)?,
            error: false,
        },
    })
}

impl Function {
    /// How many values the function returns (0 or 1).
    pub(crate) fn results(&self) -> usize {
        usize::from(self.result.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_past_the_allowance_is_not_given_back() {
        let fits = vec![Val::List(vec![Val::Bool(true); MAX_RESULT_VALUES - 1])];
        assert!(returned(&fits).is_ok());
        let over = vec![Val::List(vec![Val::Bool(true); MAX_RESULT_VALUES])];
        let why = returned(&over).unwrap_err();
        assert!(why.contains("larger than a tool may give back"), "{why}");
        let long = "x".repeat(MAX_RESULT_BYTES + 1);
        assert!(returned(&[Val::String(long)]).is_err());
        let nested = Val::Result(Ok(Some(Box::new(Val::Record(vec![(
            "a".into(),
            Val::Option(Some(Box::new(Val::Enum("b".into())))),
        )])))));
        assert_eq!(
            returned(&[nested]).unwrap(),
            Returned {
                value: json!({"a": "b"}),
                error: false
            }
        );
    }
}
