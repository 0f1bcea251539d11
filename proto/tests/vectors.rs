//! The packed-block test vectors in `proto/testdata/packed.json`: a schema and a chain
//! of state frames (hex), each with the state a client holds after applying it.
//!
//! The frames are produced here by a scripted room and must match the file byte for
//! byte (the encoding is pinned), and applying them to a mirror must give exactly the
//! listed states and checksums (the decoding is pinned). A client in another language
//! checks itself against the same file. After a deliberate format change, rewrite the
//! file with `TICKRELAY_WRITE_VECTORS=1 cargo test -p tickrelay-proto --test vectors`.

use std::sync::Arc;

use prost::Message;
use serde_json::{Value as Json, json};
use tickrelay_proto::delta::{Encoder, FrameMeta, View, encode_member_part};
use tickrelay_proto::mirror::StateMirror;
use tickrelay_proto::packed::Values;
use tickrelay_proto::state::{FieldSpec, FieldType, KindSchema, Schema, Value, World};
use tickrelay_proto::v1::{self, StateFrame};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/packed.json");

fn schema() -> Schema {
    let coordinate = |id, name| FieldSpec::new(id, name, FieldType::float(-100.0, 100.0, 0.01).unwrap());
    let ship = KindSchema::new(
        1,
        "ship",
        vec![
            coordinate(1, "x"),
            coordinate(2, "y"),
            FieldSpec::new(3, "hp", FieldType::int(0, 1000).unwrap()),
            FieldSpec::new(4, "alive", FieldType::Bool),
            FieldSpec::new(5, "name", FieldType::String { max_len: 16 }),
            FieldSpec::new(6, "blob", FieldType::Bytes { max_len: 4 }),
        ],
    )
    .unwrap();
    Schema::new(vec![ship]).unwrap()
}

/// One step of the script: what the room does in a tick, and how its frame is sent.
struct Step {
    name: &'static str,
    baseline: u64,
    values: Values,
    run: fn(&mut World),
}

fn script() -> Vec<Step> {
    vec![
        Step {
            name: "full snapshot: two ships and an entity of an undeclared kind",
            baseline: 0,
            values: Values::AgainstBaseline,
            run: |w| {
                let ship = [
                    (1, Value::Float(1.5)),
                    (2, Value::Float(-2.25)),
                    (3, Value::Int(1000)),
                    (4, Value::Bool(true)),
                    (5, Value::String("ada".into())),
                ];
                w.spawn(3, 7, 1, ship).unwrap();
                w.spawn(10, 0, 1, [(1, Value::Float(0.0)), (2, Value::Float(0.0))])
                    .unwrap();
                w.spawn(4, 0, 9, [(1, Value::Int(5))]).unwrap();
            },
        },
        Step {
            name: "delta, relative values: small moves, a large one, a new field",
            baseline: 1,
            values: Values::AgainstBaseline,
            run: |w| {
                w.set(3, 1, Value::Float(1.53)).unwrap();
                w.set(3, 3, Value::Int(990)).unwrap();
                w.set(10, 2, Value::Float(99.99)).unwrap();
                w.set(10, 6, Value::Bytes(vec![1, 2].into())).unwrap();
            },
        },
        Step {
            name: "delta: a ship removed, one added, a bool and a string changed",
            baseline: 2,
            values: Values::AgainstBaseline,
            run: |w| {
                w.despawn(10).unwrap();
                w.spawn(12, 7, 1, [(1, Value::Float(-100.0)), (4, Value::Bool(false))])
                    .unwrap();
                w.set(3, 4, Value::Bool(false)).unwrap();
                w.set(3, 5, Value::String("bob".into())).unwrap();
            },
        },
        Step {
            name: "delta with absolute values (as over QUIC datagrams)",
            baseline: 3,
            values: Values::Absolute,
            run: |w| {
                w.set(3, 1, Value::Float(1.6)).unwrap();
                w.set(12, 2, Value::Float(0.07)).unwrap();
            },
        },
        Step {
            name: "delta: a ship and an undeclared entity given to other owners (added again whole, replacing)",
            baseline: 4,
            values: Values::AgainstBaseline,
            run: |w| {
                w.set_owner(12, 8).unwrap();
                w.set_owner(4, 7).unwrap();
            },
        },
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Int(i) => json!({ "int": i }),
        Value::Float(f) => json!({ "float": f64::from(*f) }),
        Value::Bool(b) => json!({ "bool": b }),
        Value::Bytes(b) => json!({ "bytes": hex(b) }),
        Value::String(s) => json!({ "string": s }),
    }
}

/// A world as the vectors list it: entities by id, fields by id.
fn state_json(world: &World) -> Json {
    let mut entities: Vec<_> = world.entities().collect();
    entities.sort_by_key(|e| e.id());
    Json::Array(
        entities
            .iter()
            .map(|e| {
                let fields: serde_json::Map<_, _> = e.fields().map(|(id, v)| (id.to_string(), value_json(v))).collect();
                json!({ "id": e.id(), "owner": e.owner(), "kind": e.kind(), "fields": fields })
            })
            .collect(),
    )
}

/// Runs the script and returns the file's contents.
fn generate() -> Json {
    let schema = Arc::new(schema());
    let mut world = World::with_schema(32, schema.clone());
    let mut encoder = Encoder::default();
    let mut frames = Vec::new();
    for (tick, step) in (1..).zip(script()) {
        world.begin_tick(tick);
        (step.run)(&mut world);
        world.finish_tick();
        let meta = FrameMeta {
            room: "r",
            server_time_us: 0,
            checksum: Some(world.checksum()),
        };
        let mut buf = Vec::new();
        encoder.encode(&world, step.baseline, step.values, View::Whole, meta, &mut buf);
        encode_member_part(step.baseline, 0, &mut buf);
        frames.push(json!({
            "name": step.name,
            "frame_hex": hex(&buf),
            "checksum": format!("{:016x}", world.checksum()),
            "state_after": state_json(&world),
        }));
    }
    json!({
        "about": "tickrelay packed-block test vectors: apply each frame (a tickrelay.v1.StateFrame, hex) in order to a mirror of a room with this schema (Joined.schema); after each, the mirror must hold state_after and its checksum (docs/PROTOCOL.md, \"State checksum\") must equal checksum. Float values are the exact float32 values, written as decimals; bytes values are hex (not base64, as protobuf's JSON mapping would write them).",
        "schema": schema.to_proto().iter().map(kind_json).collect::<Vec<_>>(),
        "frames": frames,
    })
}

fn kind_json(k: &v1::KindSchema) -> Json {
    let fields: Vec<Json> = k
        .fields
        .iter()
        .map(|f| {
            let ty = v1::FieldType::try_from(f.r#type).unwrap();
            let mut field = json!({ "id": f.id, "name": f.name, "type": ty.as_str_name() });
            let extra = match ty {
                v1::FieldType::Int => json!({ "int_min": f.int_min, "int_max": f.int_max }),
                v1::FieldType::Float => {
                    json!({ "float_min": f.float_min, "float_max": f.float_max, "precision": f.precision })
                }
                v1::FieldType::Bytes | v1::FieldType::String => json!({ "max_len": f.max_len }),
                _ => json!({}),
            };
            field
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            field
        })
        .collect();
    json!({ "kind": k.kind, "name": k.name, "fields": fields })
}

#[test]
fn vectors_match_the_encoder_and_the_mirror() {
    let generated = generate();
    if std::env::var_os("TICKRELAY_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&generated).unwrap() + "\n").unwrap();
    }
    let file: Json = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(file, generated, "the encoder no longer produces the vectors");

    // Decode side, from the file alone (as another client would).
    let kinds: Vec<v1::KindSchema> = schema().to_proto();
    let mut mirror = StateMirror::with_schema(Arc::new(Schema::from_proto(&kinds).unwrap()));
    for frame in file["frames"].as_array().unwrap() {
        let bytes = unhex(frame["frame_hex"].as_str().unwrap());
        let decoded = StateFrame::decode(&bytes[..]).unwrap();
        mirror.apply(&decoded).unwrap();
        assert_eq!(state_json(mirror.world()), frame["state_after"], "{}", frame["name"]);
        assert_eq!(format!("{:016x}", mirror.world().checksum()), frame["checksum"]);
    }
    assert_eq!(mirror.checksums_verified(), 5);
}
