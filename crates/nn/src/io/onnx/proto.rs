//! The subset of the ONNX protobuf schema (onnx/onnx.proto, IR version 3 to 10) that slimnet
//! reads and writes, declared with prost's derive macros.
//!
//! Field numbers are those of `onnx.proto` as shipped with the `onnx` Python package 1.23
//! (checked field by field). Fields slimnet does not use (sparse tensors, training info,
//! functions, sub-graphs in attributes, metadata) are left undeclared: prost skips unknown
//! fields while decoding, so files carrying them still parse. ONNX is a proto2 schema: its
//! repeated scalars other than the `*_data` arrays of `TensorProto` are unpacked on the wire,
//! and they are written that way here so that strict proto2 readers agree; prost decodes both
//! packed and unpacked forms.

/// `TensorProto.DataType` values used by the importer and exporter.
pub mod data_type {
    /// 32-bit IEEE float.
    pub const FLOAT: i32 = 1;
    /// Unsigned 8-bit integer.
    pub const UINT8: i32 = 2;
    /// Signed 8-bit integer.
    pub const INT8: i32 = 3;
    /// Signed 32-bit integer.
    pub const INT32: i32 = 6;
    /// Signed 64-bit integer.
    pub const INT64: i32 = 7;
    /// Boolean, one byte per element.
    pub const BOOL: i32 = 9;
    /// IEEE 754 half precision.
    pub const FLOAT16: i32 = 10;
    /// 64-bit IEEE float.
    pub const DOUBLE: i32 = 11;
    /// bfloat16: the upper half of an f32.
    pub const BFLOAT16: i32 = 16;

    /// The spec's name of a data type, for error messages.
    pub fn name(t: i32) -> &'static str {
        match t {
            0 => "UNDEFINED",
            1 => "FLOAT",
            2 => "UINT8",
            3 => "INT8",
            4 => "UINT16",
            5 => "INT16",
            6 => "INT32",
            7 => "INT64",
            8 => "STRING",
            9 => "BOOL",
            10 => "FLOAT16",
            11 => "DOUBLE",
            12 => "UINT32",
            13 => "UINT64",
            14 => "COMPLEX64",
            15 => "COMPLEX128",
            16 => "BFLOAT16",
            17..=20 => "FLOAT8",
            21 => "UINT4",
            22 => "INT4",
            23 => "FLOAT4E2M1",
            _ => "unknown",
        }
    }
}

/// `AttributeProto.AttributeType` values.
pub mod attribute_type {
    /// A single float (`f`).
    pub const FLOAT: i32 = 1;
    /// A single integer (`i`).
    pub const INT: i32 = 2;
    /// A byte string (`s`).
    pub const STRING: i32 = 3;
    /// A tensor (`t`).
    pub const TENSOR: i32 = 4;
    /// A sub-graph (`g`): not supported by slimnet.
    pub const GRAPH: i32 = 5;
    /// A list of floats (`floats`).
    pub const FLOATS: i32 = 6;
    /// A list of integers (`ints`).
    pub const INTS: i32 = 7;
    /// A list of byte strings (`strings`).
    pub const STRINGS: i32 = 8;
}

/// `ModelProto`: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version (field 1).
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Operator sets the graph binds against (field 8).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Producer (field 2), e.g. `pytorch`.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Producer version (field 3).
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Model domain (field 4).
    #[prost(string, tag = "4")]
    pub domain: String,
    /// Model version (field 5).
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// Free text (field 6).
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The graph (field 7).
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `OperatorSetIdProto`: one imported operator set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain (field 1); empty or `ai.onnx` for the default operator set.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Version (field 2).
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`: nodes, initializers, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes, topologically sorted by the spec (field 1).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name (field 2).
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (field 5).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Sparse initializers (field 15): only their presence is checked (unsupported).
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// Free text (field 10).
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Graph inputs, initializers possibly included (field 11).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs (field 12).
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Type information of intermediate values (field 13).
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `SparseTensorProto`, declared only so that its presence can be reported.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// The dense shape (field 3).
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// `NodeProto`: one operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names (field 1); an empty name is an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names (field 2).
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name (field 3), optional in the spec.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator (field 4).
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Operator domain (field 7).
    #[prost(string, tag = "7")]
    pub domain: String,
    /// Attributes (field 5).
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free text (field 6).
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `AttributeProto`: a named constant parameter of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Name (field 1).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Reference to a function attribute (field 21): unsupported in a main graph.
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    /// Which value field is used (field 20), see [`attribute_type`].
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    /// Float value (field 2).
    #[prost(float, tag = "2")]
    pub f: f32,
    /// Integer value (field 3).
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// String value (field 4).
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// Tensor value (field 5).
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Float list (field 7).
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integer list (field 8).
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// String list (field 9).
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
}

/// `ValueInfoProto`: a named, typed value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Name (field 1).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type (field 2).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free text (field 3).
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `TypeProto`: only the tensor alternative of its `value` oneof is declared.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// `tensor_type` (field 1).
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

/// `TypeProto.Tensor`: element type and shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    /// Element type (field 1), see [`data_type`].
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Shape (field 2); absent for a value of unknown rank.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`: dimensions, each a value or a symbolic parameter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions (field 1).
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// The `value` oneof: `dim_value` (1) or `dim_param` (2).
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub value: Option<DimensionValue>,
    /// Denotation (field 3).
    #[prost(string, tag = "3")]
    pub denotation: String,
}

/// The alternatives of `TensorShapeProto.Dimension.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimensionValue {
    /// A fixed size (field 1).
    #[prost(int64, tag = "1")]
    DimValue(i64),
    /// A symbolic size such as `batch` (field 2).
    #[prost(string, tag = "2")]
    DimParam(String),
}

/// `StringStringEntryProto`: a key/value pair (external data locations).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Key (field 1).
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value (field 2).
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `TensorProto`: a serialized tensor (initializers, `Constant` values).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Dimensions (field 1), unpacked on the wire.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (field 2), see [`data_type`].
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// FLOAT (and COMPLEX64) elements (field 4, packed).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16 and BFLOAT16 elements (field 5,
    /// packed; 16-bit floats as their bit patterns).
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// INT64 elements (field 7, packed).
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Name (field 8).
    #[prost(string, tag = "8")]
    pub name: String,
    /// Free text (field 12).
    #[prost(string, tag = "12")]
    pub doc_string: String,
    /// Little-endian fixed-width elements (field 9).
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// DOUBLE elements (field 10, packed).
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// UINT32 and UINT64 elements (field 11, packed).
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// Where the data lives (field 14): 0 DEFAULT, 1 EXTERNAL.
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
    /// External data location entries (field 13).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
}
