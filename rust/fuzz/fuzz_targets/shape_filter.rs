//! A where clause of a shape subscription: compiled against up to four columns of the types the
//! first byte picks (an enum among them), then evaluated on rows whose values come from the
//! following pieces, and turned into SQL.

#![no_main]

use electric_core::shapes::{ColumnDef, ShapeFilter};
use electric_core::value::{decode_text, Kind, Value};
use electric_fuzz::{pieces, type_oid};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fuzz_target!(|data: &[u8]| {
    let Some((&types, rest)) = data.split_first() else {
        return;
    };
    let mut parts = pieces(rest);
    let clause = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let columns: Vec<ColumnDef> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| match (types >> (2 * i)) & 3 {
            3 if i == 3 => ColumnDef::enumeration(*name, 70_000, vec!["x".into(), "y".into()]),
            choice => ColumnDef::new(*name, type_oid(types.wrapping_mul(3 + choice))),
        })
        .collect();
    let Ok(filter) = ShapeFilter::compile(&clause, &columns) else {
        return;
    };
    let _ = filter.to_sql("t", 1);
    let mut raws: Vec<&[u8]> = parts.take(16).collect();
    raws.resize(raws.len().div_ceil(4).max(1) * 4, b"");
    for row in raws.chunks(4) {
        let values: Vec<Value<'_>> = columns
            .iter()
            .zip(row)
            .map(|(c, raw)| {
                let kind = if c.enum_labels.is_some() {
                    Kind::Text
                } else {
                    Kind::of(c.type_oid)
                };
                decode_text(kind, raw).unwrap_or(Value::Null)
            })
            .collect();
        let _ = filter.evaluate(&values);
        let _ = filter.evaluate(&values[..values.len() / 2]);
    }
});
