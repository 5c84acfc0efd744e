# Unit tests of the R serving runtime's pure logic (schema, auth rules, metrics, v2); the
# plumber app itself is tested on a real port by tests/component/test_serving_contract.py.
# `runtime` is the folder of the runtime's R files (set by the pytest driver).

runtime <- Sys.getenv("MLHUB_R_RUNTIME")
for (part in c("errors", "types", "settings", "auth", "schema", "model", "metrics", "requestlog", "inferencelog", "openapi", "v2")) {
  source(file.path(runtime, paste0(part, ".R")), local = TRUE)
}

schema <- compile_schema(list(kind = "dataframe", inputs = list(
  list(name = "temp", type = "double"), list(name = "n", type = "integer"),
  list(name = "ok", type = "boolean"), list(name = "line", type = "category",
                                            levels = c("a", "b")))))

catch <- function(expr) tryCatch({ expr; NULL }, mlhub_error = function(e) e)

test_that("records, rows and columns become the same typed data.frame", {
  rec <- from_payload(schema, list(instances = list(list(temp = 1.5, n = 2L, ok = TRUE, line = "b"))))
  rows <- from_payload(schema, list(instances = list(list(1.5, 2L, TRUE, "b"))))
  cols <- from_payload(schema, list(columns = list("line", "ok", "n", "temp"),
                                    data = list(list("b", TRUE, 2L, 1.5))))
  expect_identical(rec, rows)
  expect_identical(rec, cols)
  expect_true(is.factor(rec$line) && identical(levels(rec$line), c("a", "b")))
  expect_true(is.integer(rec$n) && is.double(rec$temp) && is.logical(rec$ok))
})

test_that("null is NA in numbers and categories, refused in integers", {
  frame <- from_rows(schema, list(list(NULL, 1L, FALSE, NULL)))
  expect_true(is.na(frame$temp) && is.na(frame$line))
  err <- catch(from_rows(schema, list(list(1, NULL, FALSE, "a"))))
  expect_match(err$message, "null is not allowed here")
  expect_equal(err$detail$column, "n")
})

test_that("a model that does not take missing numbers gets a 400 naming the null", {
  refusing <- schema
  refusing$refuse_missing <- TRUE
  err <- catch(from_rows(refusing, list(list(1, 1L, TRUE, "a"), list(NULL, 1L, TRUE, "a"))))
  expect_equal(err$status, 400L)
  expect_equal(err$detail, list(row = 1L, column = "temp", got = NULL))
  expect_match(err$message, "row 1, input 'temp': a missing value \\(null\\)")
  # a null category is still a missing level, and a bad value before the null is named first
  expect_true(is.na(from_rows(refusing, list(list(1, 1L, TRUE, NULL)))$line))
  err <- catch(from_rows(refusing, list(list("x", 1L, TRUE, "a"), list(NULL, 1L, TRUE, "a"))))
  expect_equal(err$detail$got, "a string")
})

test_that("the model is asked once whether it takes missing numbers", {
  served <- new.env()
  served$schema <- compile_schema(list(kind = "dataframe", inputs = list(
    list(name = "speed", type = "double"))))
  served$manifest <- list(example = list(list(speed = 4), list(speed = 7)))
  served$predict_args <- list()
  served$model <- lm(dist ~ speed, cars)  # answers NA for NA
  expect_false(accepts_missing(served))
  served$model <- structure(list(), class = "fills_na")
  registerS3method("predict", "fills_na", function(object, newdata, ...) {
    ifelse(is.na(newdata$speed), 0, newdata$speed)
  })
  expect_true(accepts_missing(served))
  served$model <- structure(list(), class = "fails_on_na")
  registerS3method("predict", "fails_on_na", function(object, newdata, ...) {
    if (anyNA(newdata)) stop("missing values in newdata") else newdata$speed
  })
  expect_false(accepts_missing(served))
  served$manifest$example <- NULL  # nothing to ask with: the model decides
  expect_true(accepts_missing(served))
  # the OpenAPI document says which: no null in the number inputs of a model that refuses them
  entry <- list(name = "speed", type = "double")
  expect_equal(input_schema(entry)$type, I(c("number", "null")))
  expect_equal(input_schema(entry, takes_missing = FALSE)$type, "number")
})

test_that("the parity check passes the notebook's answers and names the rows that differ", {
  bundle <- tempfile()
  dir.create(bundle)
  served <- new.env()
  served$bundle <- bundle
  served$schema <- compile_schema(list(kind = "dataframe", inputs = list(
    list(name = "speed", type = "double"))))
  served$predict_args <- list()
  served$model <- lm(dist ~ speed, cars)
  rows <- list(list(speed = 4), list(speed = 10), list(speed = 25))
  answers <- unname(predict(served$model, data.frame(speed = c(4, 10, 25))))
  write_record <- function(predictions) {
    jsonlite::write_json(list(instances = rows, predictions = as.list(predictions)),
                         file.path(bundle, "parity.json"), auto_unbox = TRUE, digits = NA)
  }
  served$manifest <- list(parity = list(file = "parity.json", rtol = 1e-6, atol = 1e-9),
                          r_packages = list(list(name = "stats",
                                                 version = as.character(getRversion()))),
                          r_version = as.character(getRversion()))
  write_record(answers + 1e-9)  # within the tolerance
  expect_null(check_parity(served))
  write_record(c(answers[1], answers[2] * 1.01, answers[3]))
  served$manifest$r_packages[[1]]$version <- "3.6.0"  # the notebook had another stats
  err <- catch(check_parity(served))
  expect_equal(err$status, 503L)
  expect_match(err$message, "differ from the notebook's on 1 of 3 rows")
  expect_match(err$message, 'row 1: notebook [0-9.]+, served [0-9.]+ \\(input \\{"speed":10\\}\\)')
  expect_match(err$message, "likely cause: stats 3.6.0 in the notebook")
  expect_true(same_answer(list(a = "x", b = 1), list(a = "x", b = 1 + 1e-12), 1e-6, 1e-9))
  expect_false(same_answer("setosa", "virginica", 1e-6, 1e-9))
  expect_false(same_answer(TRUE, 1L, 1e-6, 1e-9))
})

test_that("bad values name the row, the column and what was expected", {
  err <- catch(from_rows(schema, list(list(1, 1L, TRUE, "a"), list(1, 1L, TRUE, "c"))))
  expect_equal(err$status, 400L)
  expect_equal(err$detail, list(row = 1L, column = "line", expected = "category", got = "a string"))
  expect_match(err$message, "one of the levels 'a', 'b'")
  err <- catch(from_rows(schema, list(list("1", 1L, TRUE, "a"))))
  expect_match(err$message, "strings are|expected a number")
  err <- catch(from_rows(schema, list(list(1, 2.5, TRUE, "a"))))
  expect_equal(err$detail$column, "n")
  err <- catch(from_rows(schema, list(list(1, 1L, 1, "a"))))
  expect_equal(err$detail$column, "ok")
  err <- catch(from_records(schema, list(list(temp = 1, n = 1L, ok = TRUE))))
  expect_equal(as.character(err$detail$missing), "line")
})

test_that("bearer tokens, API keys and hub users follow mlhub.serving.auth's rules", {
  path <- tempfile(fileext = ".json")
  jsonlite::write_json(list(users = list("carl"), groups = list("analysts"),
                            key_hashes = list(sha256_hex("mlhk_good"))), path, auto_unbox = TRUE)
  users <- list(`t-alice` = list(name = "alice", kind = "user", groups = list()),
                `t-bob` = list(name = "bob", kind = "user", groups = list("analysts")),
                `t-eve` = list(name = "eve", kind = "user", groups = list()),
                `t-svc` = list(name = "alice", kind = "service", groups = list()))
  asked <- 0
  hub <- hub_users("http://hub", ask = function(url, token, timeout) {
    asked <<- asked + 1
    users[[token]]
  })
  auth <- authenticator(access_list(path), hub = hub, owner = "alice")
  expect_equal(auth_check(auth, "token mlhk_good"), paste0("key:", substr(sha256_hex("mlhk_good"), 1, 12)))
  expect_match(auth_check(auth, NULL, "mlhk_good"), "^key:")
  expect_equal(auth_check(auth, "Bearer t-alice"), "user:alice")
  expect_equal(auth_check(auth, "token t-bob"), "user:bob")
  expect_equal(catch(auth_check(auth, "token t-eve"))$status, 403L)
  expect_equal(catch(auth_check(auth, "token t-svc"))$status, 403L)
  expect_equal(catch(auth_check(auth, "token mlhk_bad"))$status, 401L)
  expect_equal(catch(auth_check(auth, "Basic abc"))$status, 401L)
  expect_equal(catch(auth_check(auth, NULL))$status, 401L)
  before <- asked
  auth_check(auth, "token t-alice")
  expect_equal(asked, before)  # cached by the token's digest
  expect_equal(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
})

test_that("metrics render counters, a cumulative histogram and the model info", {
  m <- new_metrics()
  observe(m, "/v1/predict", 200L, 0.003)
  observe(m, "/v1/predict", 200L, 0.2)
  observe(m, "/v1/predict", 400L, 0.001)
  add_rows(m, 7)
  m$info <- list(name = "m", version = "v\"1")
  text <- render_metrics(m)
  expect_match(text, 'mlhub_requests_total{route="/v1/predict",status="200"} 2', fixed = TRUE)
  expect_match(text, 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="0.005"} 2', fixed = TRUE)
  expect_match(text, 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"} 3', fixed = TRUE)
  expect_match(text, "mlhub_predictions_total 7", fixed = TRUE)
  expect_match(text, 'mlhub_model_info{name="m",version="v\\"1"} 1', fixed = TRUE)
})

test_that("v2 tensors: one 2-D tensor or one per input", {
  flat <- list(name = "x", shape = list(1, 4), datatype = "BYTES", data = list(1.5, 2L, TRUE, "a"))
  expect_equal(nrow(parse_infer(schema, list(inputs = list(flat)))$frame), 1)
  bad <- list(name = "x", shape = list(2, 4), datatype = "BYTES", data = list(1))
  expect_match(catch(parse_infer(schema, list(inputs = list(bad))))$message, "needs 8 values")
  odd <- list(name = "x", shape = list(1), datatype = "NOPE", data = list(1))
  expect_match(catch(parse_infer(schema, list(inputs = list(odd))))$message, "datatype 'NOPE'")
})

test_that("v2 binary tensors (Triton's extension): inputs read, outputs written", {
  le <- function(x, size) writeBin(x, raw(), size = size, endian = "little")
  text <- function(v) c(le(nchar(v, "bytes"), 4L), charToRaw(v))
  binary <- c(le(c(1.5, 2.5), 8L), le(c(2L, 3L), 4L), as.raw(c(1, 0)), text("b"), text("a"))
  spec <- function(name, datatype, size) list(name = name, shape = list(2), datatype = datatype,
                                              parameters = list(binary_data_size = size))
  body <- list(inputs = list(spec("temp", "FP64", 16), spec("n", "INT32", 8),
                             spec("ok", "BOOL", 2), spec("line", "BYTES", 10)),
               parameters = list(binary_data_output = TRUE))
  parsed <- parse_infer(schema, body, binary)
  expect_equal(parsed$frame$temp, c(1.5, 2.5))
  expect_identical(parsed$frame$n, c(2L, 3L))
  expect_identical(parsed$frame$ok, c(TRUE, FALSE))
  expect_identical(as.character(parsed$frame$line), c("b", "a"))
  expect_true(parsed$binary_out)
  answer <- infer_answer(list(name = "m", version = "v1"), parsed, c(0.25, 4))
  header <- jsonlite::parse_json(rawToChar(answer$json))
  expect_equal(header$outputs[[1]]$parameters$binary_data_size, 16)
  expect_null(header$outputs[[1]][["data"]])
  expect_equal(readBin(answer$tail, "double", n = 2, size = 8, endian = "little"), c(0.25, 4))
  strings <- infer_answer(list(name = "m"), parsed, c("yes", "no"))$tail
  expect_identical(strings, c(text("yes"), text("no")))
  # an output asked for as JSON stays JSON
  body$outputs <- list(list(name = "predict", parameters = list(binary_data = FALSE)))
  expect_false(parse_infer(schema, body, binary)$binary_out)
  # sizes that do not add up are 400s saying so
  expect_match(catch(parse_infer(schema, body, c(binary, as.raw(0))))$message,
               "no input's binary_data_size")
  expect_match(catch(parse_infer(schema, body, binary[-1]))$message, "does not fit")
  body$inputs[[1]]$parameters$binary_data_size <- 15
  expect_match(catch(parse_infer(schema, body, binary[-1]))$message, "whole number of FP64")
  expect_match(catch(split_binary(binary, "99"))$message, "Inference-Header-Content-Length")
  parts <- split_binary(c(charToRaw('{"a": 1}'), binary), "8")
  expect_equal(parts$body$a, 1)
  expect_identical(parts$binary, binary)
  expect_match(catch(split_binary(c(charToRaw('{"a": 1}'), binary), "5"))$message,
               "first 5 bytes")
})

test_that("with a metrics folder, every worker's /metrics shows all workers' counters", {
  dir <- tempfile()
  dir.create(dir)
  one <- new_metrics(dir = dir, worker = "1")
  two <- new_metrics(dir = dir, worker = "2")
  one$gauges <- two$gauges <- list(mlhub_workers = list(help = "w", value = 1L))
  observe(one, "/v1/predict", 200L, 0.01); add_rows(one, 3); persist(one)
  observe(two, "/v1/predict", 200L, 0.02); observe(two, "/v1/predict", 400L, 0.001)
  add_rows(two, 2); persist(two)
  for (m in list(one, two)) {
    text <- render_metrics(m)
    expect_match(text, 'mlhub_requests_total{route="/v1/predict",status="200"} 2', fixed = TRUE)
    expect_match(text, 'mlhub_requests_total{route="/v1/predict",status="400"} 1', fixed = TRUE)
    expect_match(text, "mlhub_predictions_total 5", fixed = TRUE)
    expect_match(text, "mlhub_workers 2", fixed = TRUE)
  }
  alone <- new_metrics(dir = "")
  observe(alone, "/healthz", 200L, 0.001)
  expect_match(render_metrics(alone), 'route="/healthz",status="200"} 1', fixed = TRUE)
})

test_that("the request log writes failed outcomes with their code, within the rate", {
  now <- 1000
  lines <- character()
  log <- new_request_log("errors", 2L, clock = function() now,
                         write = function(line) lines <<- c(lines, line))
  log_outcome(log, "POST", "/v1/predict", 200L, 0.001)
  err <- mlhub_error(400L, "invalid_input", "row 0, input 'temp': expected a number")
  for (i in 1:5) log_outcome(log, "POST", "/v1/predict", 400L, 0.0004, err)
  expect_length(lines, 2L)
  first <- jsonlite::fromJSON(sub("^request ", "", lines[1]))
  expect_identical(first$code, "invalid_input")
  expect_identical(first$route, "/v1/predict")
  expect_identical(first$status, 400L)
  expect_true(startsWith(lines[1], "request {"))
  now <- 1001
  log_outcome(log, "GET", "/v1/metadata", 401L, 0.0001,
              mlhub_error(401L, "unauthorized", "no valid token"))
  expect_identical(jsonlite::fromJSON(sub("^request ", "", lines[3]))$dropped, 3L)
  quiet <- new_request_log("off", write = function(line) stop("nothing is written"))
  expect_null(log_outcome(quiet, "POST", "/v1/predict", 500L, 1, err))
  expect_error(new_request_log("loud"), "MLHUB_REQUEST_LOG=loud is not valid")
})

test_that("the inference log keeps its share of requests and sends them as one batch", {
  sent <- character(0)
  settings <- list(inference_log_sample = 0.5, inference_log_buffer = 5L,
                   inference_log_flush_seconds = 2L, version = "sha256:r")
  log <- new_inference_log(settings, send = function(body) sent <<- c(sent, body),
                           clock = function() 1765000000.5)
  frame <- data.frame(speed = c(4, 7))
  for (i in 1:4) record_inference(log, 200L, 0.002, list(frame = frame, predictions = c(1.5, 2.5)), NULL)
  record_inference(log, 400L, 0.001, NULL, list(message = "row 0, input 'speed': not a number"))
  record_inference(log, 400L, 0.001, NULL, list(message = "again"))
  expect_equal(log$rows, 5L)  # every second request: two of two rows, then the second refusal
  flush_inference_log(log)
  batch <- jsonlite::fromJSON(sent, simplifyVector = FALSE)
  expect_equal(batch$version, "sha256:r")
  expect_equal(length(batch$requests), 3L)
  first <- batch$requests[[1]]
  expect_equal(first$inputs, list(list(speed = 4), list(speed = 7)))
  expect_equal(first$outputs, list(1.5, 2.5))
  expect_equal(c(first$status, first$ms, first$time), c(200, 2, 1765000000.5))
  expect_equal(batch$requests[[3]]$error, "again")
  expect_null(batch$requests[[3]]$inputs)
  expect_equal(log$sent, 5)
})

test_that("a full buffer drops and counts; a refused batch waits for the next flush", {
  failing <- TRUE
  settings <- list(inference_log_sample = 1, inference_log_buffer = 3L)
  log <- new_inference_log(settings, send = function(body) if (failing) stop("refused"))
  logged <- list(frame = data.frame(x = 1:2), predictions = c(0, 1))
  record_inference(log, 200L, 0.001, logged, NULL)
  record_inference(log, 200L, 0.001, logged, NULL)  # 4 rows > 3: dropped
  expect_equal(c(log$rows, log$dropped), c(2, 2))
  suppressMessages(flush_inference_log(log))
  expect_equal(log$rows, 2L)  # back in the buffer
  failing <- FALSE
  suppressMessages(flush_inference_log(log))
  expect_equal(c(log$rows, log$sent), c(0, 2))
  m <- new_metrics(dir = "")
  m$inference_log <- log
  text <- render_metrics(m)
  expect_match(text, "mlhub_inference_log_rows_total 2", fixed = TRUE)
  expect_match(text, "mlhub_inference_log_dropped_total 2", fixed = TRUE)
  expect_null(new_inference_log(list(inference_log_sample = 0)))
})

test_that("a batch the publisher refuses (4xx) is dropped and counted, not sent again", {
  tries <- 0
  refuse <- function(body) {
    tries <<- tries + 1
    err <- simpleError("the publisher answered 429: over the model's rate")
    class(err) <- c("mlhub_refused", class(err))
    stop(err)
  }
  log <- new_inference_log(list(inference_log_sample = 1), send = refuse)
  record_inference(log, 200L, 0.001, list(frame = data.frame(x = 1:2), predictions = c(0, 1)), NULL)
  suppressMessages(flush_inference_log(log))
  suppressMessages(flush_inference_log(log))
  expect_equal(c(tries, log$rows, log$dropped, log$sent), c(1, 0, 2, 0))
})
