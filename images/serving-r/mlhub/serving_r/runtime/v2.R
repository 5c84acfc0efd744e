# Open Inference Protocol (v2) tensors in and out, mapped onto the same schema as /v1, as in
# the Python runtime (mlhub.serving.v2): one 2-D tensor [rows, features] (any name), or one
# 1-D tensor per input named after the signature's inputs ([rows] or [rows, 1]).
# Tensors come as JSON "data" or, with Triton's binary tensor data extension (tritonclient's
# default), as raw little-endian bytes after a JSON header whose length the
# Inference-Header-Content-Length header gives; outputs go back the same way when asked.

HEADER_LENGTH_NAME <- "Inference-Header-Content-Length"
EXTENSIONS <- c("binary_tensor_data")
# datatype -> how readBin reads one value (FP16 has no R type; 64-bit integers become doubles)
BINARY_TYPES <- list(
  BOOL = list(what = "integer", size = 1L, signed = FALSE),
  UINT8 = list(what = "integer", size = 1L, signed = FALSE),
  UINT16 = list(what = "integer", size = 2L, signed = FALSE),
  INT8 = list(what = "integer", size = 1L, signed = TRUE),
  INT16 = list(what = "integer", size = 2L, signed = TRUE),
  INT32 = list(what = "integer", size = 4L, signed = TRUE),
  UINT32 = list(what = "unsigned", size = 4L),
  INT64 = list(what = "wide", size = 8L),
  UINT64 = list(what = "wide", size = 8L),
  FP32 = list(what = "double", size = 4L),
  FP64 = list(what = "double", size = 8L))

DATATYPES <- c("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
               "INT64", "FP16", "FP32", "FP64", "BYTES")
# SIGNATURE_DATATYPE (signature type -> datatype) is in types.R, generated from the one table

flatten <- function(data) {
  if (!is.list(data)) return(list(data))
  if (!length(data)) return(list())
  do.call(c, lapply(data, flatten))
}

v2_server_metadata <- function() {
  list(name = "mlhub", version = Sys.getenv("MLHUB_SERVER_VERSION", ""), extensions = I(EXTENSIONS))
}

# A binary-extension body -> list(body = its JSON header parsed, binary = the tensors' bytes after it).
split_binary <- function(raw, header_length) {
  size <- suppressWarnings(as.numeric(header_length))
  if (!grepl("^[0-9]+$", header_length) || size < 1 || size > length(raw)) {
    invalid_input(sprintf(paste0(
      "%s is '%s': it must be the byte length of the JSON header at the start of the body ",
      "(%d bytes)"), HEADER_LENGTH_NAME, header_length, length(raw)),
      list(field = HEADER_LENGTH_NAME))
  }
  text <- rawToChar(raw[seq_len(size)])
  body <- if (!validUTF8(text)) NULL else
    tryCatch(jsonlite::parse_json(text, simplifyVector = FALSE), error = function(e) NULL)
  if (is.null(body)) {
    invalid_input(sprintf(paste0(
      "the body's first %d bytes (%s) are not JSON: that header must give the length of the ",
      "JSON part only, and no header may be left over from a request of another size"),
      as.integer(size), HEADER_LENGTH_NAME), list(field = HEADER_LENGTH_NAME))
  }
  list(body = body, binary = if (size < length(raw)) raw[(size + 1):length(raw)] else raw(0))
}

unsigned <- function(v) ifelse(v < 0, as.numeric(v) + 2^32, as.numeric(v))

# One input's raw bytes (Triton's layout) as a list of values, as JSON data would give.
binary_values <- function(name, datatype, chunk) {
  bad <- function(why) invalid_input(sprintf("input '%s': %s", name, why),
                                     list(input = name, datatype = datatype))
  if (datatype == "BYTES") {
    layout <- "its binary data is not a list of 4-byte lengths, each followed by that many bytes"
    values <- list()
    at <- 0L
    while (at < length(chunk)) {
      if (at + 4L > length(chunk)) bad(layout)
      size <- readBin(chunk[at + 1:4], "integer", size = 4L, endian = "little")
      at <- at + 4L
      if (size < 0L || at + size > length(chunk)) bad(layout)
      text <- if (size) rawToChar(chunk[at + seq_len(size)]) else ""
      if (!validUTF8(text)) bad("a BYTES element is not UTF-8 text")
      values[[length(values) + 1L]] <- text
      at <- at + size
    }
    return(values)
  }
  spec <- BINARY_TYPES[[datatype]]
  if (is.null(spec)) bad(sprintf("binary %s data cannot be read by the R runtime: send it as JSON", datatype))
  if (length(chunk) %% spec$size) {
    bad(sprintf("%d bytes is not a whole number of %s values (%d bytes each)", length(chunk),
                datatype, spec$size))
  }
  n <- length(chunk) %/% spec$size
  values <- switch(spec$what,
    double = readBin(chunk, "double", n = n, size = spec$size, endian = "little"),
    unsigned = unsigned(readBin(chunk, "integer", n = n, size = 4L, endian = "little")),
    wide = {
      halves <- readBin(chunk, "integer", n = 2L * n, size = 4L, endian = "little")
      halves[c(FALSE, TRUE)] * 2^32 + unsigned(halves[c(TRUE, FALSE)])
    },
    readBin(chunk, "integer", n = n, size = spec$size, signed = spec$signed, endian = "little"))
  if (datatype == "BOOL") values <- values != 0L
  as.list(values)
}

parse_tensor <- function(i, spec, binary = raw(0), offset = 0L) {
  if (!is_record(spec)) {
    invalid_input(sprintf("inputs[%d] must be an object with name, shape, datatype and data", i))
  }
  name <- spec$name
  if (!is.character(name) || !nzchar(name)) {
    invalid_input(sprintf("inputs[%d] needs a 'name'", i), list(input = i, field = "name"))
  }
  shape <- spec$shape
  if (!is_row(shape) || !length(shape) ||
      !all(vapply(shape, function(d) is.numeric(d) && length(d) == 1 && d >= 0 && d == floor(d), TRUE))) {
    invalid_input(sprintf(
      "input '%s': 'shape' must be a list of sizes, e.g. [2, 4] for 2 rows of 4", name),
      list(input = name, field = "shape"))
  }
  shape <- as.integer(unlist(shape))
  if (!is.character(spec$datatype) || !(spec$datatype %in% DATATYPES)) {
    invalid_input(sprintf("input '%s': datatype '%s' is not one of %s", name,
                          spec$datatype %||% "null", paste(DATATYPES, collapse = ", ")),
                  list(input = name, field = "datatype"))
  }
  size <- if (is_record(spec$parameters)) spec$parameters$binary_data_size else NULL
  used <- 0L
  if (!is.null(size)) {
    if (!is.numeric(size) || length(size) != 1 || size < 0 || size != floor(size) ||
        offset + size > length(binary)) {
      invalid_input(sprintf(
        "input '%s': binary_data_size %s does not fit the %d bytes left after the JSON header",
        name, format(size), length(binary) - offset),
        list(input = name, field = "parameters.binary_data_size"))
    }
    values <- binary_values(name, spec$datatype, binary[offset + seq_len(size)])
    used <- as.integer(size)
  } else if (!is.list(spec$data) || !is.null(names(spec$data))) {
    invalid_input(sprintf(
      "input '%s': 'data' must be a list (flat or nested) of the tensor's values", name),
      list(input = name, field = "data"))
  } else {
    values <- flatten(spec$data)
  }
  if (length(values) != prod(shape)) {
    invalid_input(sprintf("input '%s': shape [%s] needs %d values, data has %d", name,
                          paste(shape, collapse = ", "), prod(shape), length(values)),
                  list(input = name, shape = I(shape), got = length(values)))
  }
  list(name = name, shape = shape, values = values, used = used)
}

flag <- function(parameters, name) is_record(parameters) && isTRUE(parameters[[name]])

parse_infer <- function(schema, body, binary = raw(0)) {
  if (!is_record(body) || !is_row(body$inputs) || !length(body$inputs)) {
    invalid_input('an infer request needs "inputs": [{"name", "shape", "datatype", "data"}, ...]',
                  list(field = "inputs"))
  }
  tensors <- list()
  offset <- 0L
  for (i in seq_along(body$inputs)) {
    tensors[[i]] <- parse_tensor(i - 1L, body$inputs[[i]], binary, offset)
    offset <- offset + tensors[[i]]$used
  }
  if (offset != length(binary)) {
    invalid_input(sprintf(paste0(
      "the body has %d bytes after the JSON header that no input's binary_data_size ",
      "accounts for"), length(binary) - offset), list(field = "parameters.binary_data_size"))
  }
  if (length(tensors) == 1 && length(tensors[[1]]$shape) == 2) {
    t <- tensors[[1]]
    width <- t$shape[2]
    rows <- lapply(seq_len(t$shape[1]), function(r) t$values[(r - 1) * width + seq_len(width)])
    frame <- from_rows(schema, rows)
  } else {
    for (t in tensors) {
      if (length(t$shape) > 2 || (length(t$shape) == 2 && t$shape[2] != 1)) {
        invalid_input(sprintf(paste0(
          "input '%s' has shape [%s]: send one tensor [rows, features], ",
          "or one tensor [rows] per input"), t$name, paste(t$shape, collapse = ", ")),
          list(input = t$name, shape = I(t$shape)))
      }
    }
    columns <- lapply(tensors, function(t) t$values)
    names(columns) <- vapply(tensors, function(t) t$name, "")
    frame <- from_columns(schema, columns)
  }
  outputs <- body$outputs
  binary_out <- flag(body$parameters, "binary_data_output")
  if (!is.null(outputs)) {
    ok <- is_row(outputs) && all(vapply(outputs, function(o) is_record(o) && identical(o$name, "predict"), TRUE))
    if (!ok) {
      invalid_input(paste0('"outputs" must list objects named predict (this R model has no ',
                           "predict_proba)"), list(field = "outputs", allowed = I("predict")))
    }
    for (o in outputs) {
      if (is_record(o$parameters) && !is.null(o$parameters$binary_data)) {
        binary_out <- isTRUE(o$parameters$binary_data)
      }
    }
  }
  list(frame = frame, id = body$id, binary_out = binary_out)
}

# An output tensor's bytes in Triton's layout (little-endian; BYTES length-prefixed).
raw_values <- function(values, datatype) {
  switch(datatype,
    FP64 = writeBin(as.double(values), raw(), size = 8L, endian = "little"),
    INT32 = writeBin(as.integer(values), raw(), size = 4L, endian = "little"),
    BOOL = writeBin(as.integer(values), raw(), size = 1L, endian = "little"),
    unlist(lapply(as.character(values), function(v) {
      bytes <- charToRaw(enc2utf8(v))
      c(writeBin(length(bytes), raw(), size = 4L, endian = "little"), bytes)
    })) %||% raw(0))
}

# The infer answer: list(json = the JSON as raw bytes, tail = the binary output or NULL).
infer_answer <- function(served, parsed, predictions) {
  tensor <- output_tensor(predictions)
  tail <- NULL
  if (isTRUE(parsed$binary_out)) {
    tail <- raw_values(unclass(tensor$data), tensor$datatype)
    tensor$data <- NULL
    tensor$parameters <- list(binary_data_size = length(tail))
  }
  answer <- list(model_name = served$name, model_version = served$version,
                 outputs = list(tensor))
  if (!is.null(parsed$id)) answer$id <- parsed$id
  list(json = charToRaw(to_json(answer)), tail = tail)
}

datatype_of <- function(values) {
  if (is.logical(values)) return("BOOL")
  if (is.integer(values)) return("INT32")
  if (is.numeric(values)) return("FP64")
  "BYTES"
}

output_tensor <- function(predictions) {
  if (is.data.frame(predictions) || is.matrix(predictions)) {
    m <- as.matrix(predictions)
    return(list(name = "predict", shape = dim(m), datatype = datatype_of(as.vector(m)),
                data = I(as.vector(t(m)))))
  }
  list(name = "predict", shape = I(length(predictions)), datatype = datatype_of(predictions),
       data = I(predictions))
}

v2_model_metadata <- function(served) {
  schema <- served$schema
  inputs <- if (is.null(schema)) list() else lapply(seq_len(schema$width), function(j) {
    list(name = schema$names[j], datatype = SIGNATURE_DATATYPE[[schema$types[j]]], shape = I(-1L))
  })
  datatype <- if (!is.null(served$classes)) "BYTES" else "FP64"
  list(name = served$name, versions = I(as.character(served$version)),
       platform = paste0("mlhub-r-", served$manifest$flavor %||% "rds"),
       inputs = inputs,
       outputs = list(list(name = "predict", datatype = datatype, shape = I(-1L))))
}
