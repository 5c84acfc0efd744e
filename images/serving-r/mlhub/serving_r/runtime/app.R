# The serving contract as a plumber router (the R twin of mlhub.serving.app).
#
# Per request: strip the URL prefix (a preroute hook, so /models/alice/m/v1/predict and
# /v1/predict reach the same route), one token check, one JSON parse, one schema conversion,
# the model call and one JSON write. Every answer is built here (the handlers return the
# response object), so every failure leaves as {"error", "code", "detail"} through
# error_response(), the one place where errors become HTTP statuses.

JSON_TYPE_HEADER <- "application/json"
PROMETHEUS <- "text/plain; version=0.0.4; charset=utf-8"
PUBLIC_ROUTES <- c("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")
PREDICT_ROUTES <- c("/v1/predict", "/v2/models/{name}/infer")  # what the inference log samples
ROUTE_METHODS <- list(
  `/healthz` = "GET", `/readyz` = "GET", `/v1/metadata` = "GET", `/v1/predict` = "POST",
  `/v2/models/<name>` = "GET", `/v2/models/<name>/ready` = "GET",
  `/v2/models/<name>/infer` = "POST", `/v2/models/<name>/versions/<version>` = "GET",
  `/v2/models/<name>/versions/<version>/ready` = "GET",
  `/v2/models/<name>/versions/<version>/infer` = "POST", `/v2` = "GET",
  `/v2/health/live` = "GET", `/v2/health/ready` = "GET",
  `/metrics` = "GET", `/openapi.json` = "GET")
ALL_METHODS <- c("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

send <- function(res, status, body, content_type = JSON_TYPE_HEADER) {
  res$status <- as.integer(status)
  res$setHeader("Content-Type", content_type)
  # httpuv writes a response's headers and body separately and cannot turn Nagle's algorithm
  # off, so on a kept-alive connection every body waits for the client's delayed ACK (~40 ms).
  # Closing after each response flushes it at once; a new local connection costs far less.
  res$setHeader("Connection", "close")
  res$body <- body
  res
}

error_response <- function(res, err) {
  err <- as_error(err)
  if (err$status >= 500L && err$code == "internal_error") message("error: ", err$message)
  if (err$status == 401L) res$setHeader("WWW-Authenticate", 'Bearer realm="mlhub"')
  send(res, err$status, to_json(error_body(err)))
}

header <- function(req, name) {
  value <- req[[name]]
  if (is.null(value) || !nzchar(value)) NULL else value
}

# The request body as raw bytes, after checking its size (before anything reads it).
read_raw_body <- function(req, max_bytes) {
  length <- suppressWarnings(as.numeric(header(req, "CONTENT_LENGTH") %||%
                                         header(req, "HTTP_CONTENT_LENGTH") %||% "0"))
  raw <- req$bodyRaw
  size <- max(length, length(raw), na.rm = TRUE)
  if (size > max_bytes) {
    fail(413L, "payload_too_large", sprintf(paste0(
      "the body has %.0f bytes, more than this server's limit of %d bytes: split the ",
      "instances into smaller requests"), size, max_bytes), list(limit = max_bytes, size = size))
  }
  if (!length(raw)) {
    invalid_input('the body is empty: send JSON such as {"instances": [[...]]}',
                  list(field = "body"))
  }
  raw
}

# A JSON body as R values. A missing Content-Type and any JSON type are JSON; a body declared
# as anything else (curl -d and requests' data= say application/x-www-form-urlencoded,
# tritonclient says nothing and a tornado proxy then adds that) is read as JSON when it parses,
# and refused with 415 naming its type when it does not, as in mlhub.serving.app.
parse_json_body <- function(req, raw) {
  content_type <- tolower(trimws(sub(";.*", "", header(req, "CONTENT_TYPE") %||%
                                      header(req, "HTTP_CONTENT_TYPE") %||% "")))
  declared_json <- !nzchar(content_type) || content_type == JSON_TYPE_HEADER ||
    endsWith(content_type, "+json")
  text <- tryCatch(rawToChar(raw), error = function(e) NULL)
  body <- if (is.null(text) || !validUTF8(text)) NULL else
    tryCatch(jsonlite::parse_json(text, simplifyVector = FALSE), error = function(e) e)
  if (is.null(body) || inherits(body, "error")) {
    if (!declared_json) {
      fail(415L, "unsupported_media_type", sprintf(paste0(
        "the body is declared as '%s' and is not JSON: send JSON with ",
        "'Content-Type: application/json'"), content_type), list(content_type = content_type))
    }
    reason <- if (inherits(body, "error")) gsub("\\s+", " ", conditionMessage(body)) else "not UTF-8 text"
    invalid_input(sprintf(paste0('the body is not valid JSON (%s): send a JSON object such ',
                                 'as {"instances": [[...]]}'), trimws(reason)),
                  list(field = "body"))
  }
  body
}

read_json_body <- function(req, max_bytes) parse_json_body(req, read_raw_body(req, max_bytes))

# Any body is left as it came (req$bodyRaw): read_json_body checks its type and size and
# parses it, so plumber's own parser never answers a bad body with its own error.
plumber::register_parser("mlhub_raw", function(...) function(value, ...) NULL,
                         regex = ".*", verbose = FALSE)

create_app <- function(settings, served, metrics = new_metrics(), authenticate = NULL,
                       request_log = new_request_log(settings$request_log %||% "errors",
                                                     settings$request_log_rate %||% 20L),
                       inference_log = new_inference_log(settings)) {
  if (settings$auth && is.null(authenticate)) {
    stop("authentication is on but no authenticator was given", call. = FALSE)
  }
  metrics$inference_log <- inference_log  # its sent and dropped rows are in /metrics
  prefix <- settings$url_prefix
  max_bytes <- settings$max_body_bytes
  timeout <- settings$request_timeout
  healthz <- to_json(list(status = "ok"))
  metadata <- to_json(served_metadata(served, settings$owner))
  openapi <- to_json(build_spec(served, owner = settings$owner, prefix = prefix,
                                auth = settings$auth))
  ready_body <- to_json(list(status = "ready", name = served$name, version = served$version))
  v2_metadata <- if (served$ready) to_json(v2_model_metadata(served)) else NULL
  server_metadata <- to_json(v2_server_metadata())
  metrics$info <- list(name = served$name, version = served$version %||% "",
                       flavor = served$manifest$flavor %||% "")
  metrics$gauges <- list(
    mlhub_model_ready = list(help = "1 when the model is loaded and can predict.",
                             value = as.integer(served$ready)),
    mlhub_model_load_seconds = list(help = "Seconds spent loading the model.",
                                    value = served$load_seconds),
    # One R process serves one request at a time: more workers are more processes (the
    # serving-r image runs MLHUB_WORKERS of them behind nginx; see metrics.R).
    mlhub_workers = list(help = "Worker processes behind this metrics endpoint.", value = 1L))

  same_model <- function(name) {
    if (!identical(name, served$name)) {
      fail(404L, "not_found", sprintf("this server serves the model '%s', not '%s'",
                                      served$name, name), list(model = served$name))
    }
  }

  same_version <- function(version) {
    if (!identical(version, served$version)) {
      fail(404L, "not_found", sprintf(paste0(
        "this server serves version '%s' of '%s', not '%s': leave the version out to call ",
        "the live one"), served$version %||% "", served$name, version),
        list(model = served$name, version = served$version))
    }
  }

  # One route: time it, check the token unless public, map every failure.
  # Versioned OIP routes count under their unversioned label, as in mlhub.serving.
  endpoint <- function(route, handler) {
    force(handler)
    label <- gsub("<name>", "{name}", sub("/versions/<version>", "", route, fixed = TRUE),
                  fixed = TRUE)
    public <- label %in% PUBLIC_ROUTES
    named <- grepl("<name>", route, fixed = TRUE)
    function(req, res, ...) {
      started <- proc.time()[["elapsed"]]
      failed <- NULL
      res <- tryCatch({
        if (!public && !is.null(authenticate)) {
          authenticate(header(req, "HTTP_AUTHORIZATION"), header(req, "HTTP_X_API_KEY"))
        }
        if (named) {
          args <- list(...)
          same_model(args$name)
          if (!is.null(args$version)) same_version(utils::URLdecode(args$version))
          handler(req, res, args$name)
        } else handler(req, res)
      }, error = function(e) {
        failed <<- as_error(e)
        error_response(res, failed)
      })
      elapsed <- proc.time()[["elapsed"]] - started
      observe(metrics, label, res$status, elapsed)
      persist(metrics)
      log_outcome(request_log, req$REQUEST_METHOD, label, res$status, elapsed, failed)
      # a caller who may not call the model is not its traffic (and anyone can be one)
      if (label %in% PREDICT_ROUTES && !res$status %in% c(401L, 403L)) {
        record_inference(inference_log, res$status, elapsed, req$mlhub_logged, failed)
      }
      res
    }
  }

  readiness <- function(req, res) {
    require_ready(served)
    send(res, 200L, ready_body)
  }
  handlers <- list(
    `/healthz` = function(req, res) send(res, 200L, healthz),
    # OIP's health routes answer {"live"} / {"ready"}, as KServe's servers (its client reads them)
    `/v2/health/live` = function(req, res) send(res, 200L, to_json(list(live = TRUE))),
    `/readyz` = readiness,
    `/v2/health/ready` = function(req, res) {
      require_ready(served)
      send(res, 200L, to_json(list(ready = TRUE)))
    },
    `/v1/metadata` = function(req, res) send(res, 200L, metadata),
    `/v1/predict` = function(req, res) {
      require_ready(served)
      if (tolower(req$argsQuery$proba %||% "") %in% c("1", "true", "yes", "on")) {
        fail(400L, "bad_request", sprintf(
          "this model (%s) has no predict_proba(): ask for predictions without proba",
          served$manifest$model_class %||% "R model"), list(field = "proba"))
      }
      body <- read_json_body(req, max_bytes)
      frame <- if (is.null(served$schema)) untyped_frame(body) else from_payload(served$schema, body)
      predictions <- predict_frame(served, frame, timeout)
      add_rows(metrics, nrow(frame))
      req$mlhub_logged <- list(frame = frame, predictions = predictions)
      send(res, 200L, to_json(list(predictions = I(predictions))))
    },
    `/v2/models/<name>` = function(req, res, name) {
      require_ready(served)
      send(res, 200L, v2_metadata)
    },
    `/v2/models/<name>/ready` = function(req, res, name) {
      require_ready(served)
      send(res, 200L, to_json(list(name = served$name, ready = TRUE)))
    },
    `/v2/models/<name>/infer` = function(req, res, name) {
      require_ready(served)
      raw <- read_raw_body(req, max_bytes)
      header_length <- header(req, "HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
      parts <- if (is.null(header_length)) list(body = parse_json_body(req, raw), binary = raw(0)) else
        split_binary(raw, header_length)
      body <- parts$body
      if (is.null(served$schema)) {
        invalid_input("this model was published without an example, so its inputs have no names: use /v1/predict")
      }
      parsed <- parse_infer(served$schema, body, parts$binary)
      predictions <- predict_frame(served, parsed$frame, timeout)
      add_rows(metrics, nrow(parsed$frame))
      req$mlhub_logged <- list(frame = parsed$frame, predictions = predictions)
      answer <- infer_answer(served, parsed, predictions)
      if (is.null(answer$tail)) return(send(res, 200L, answer$json))
      res$setHeader(HEADER_LENGTH_NAME, as.character(length(answer$json)))
      send(res, 200L, c(answer$json, answer$tail), "application/octet-stream")
    },
    `/v2` = function(req, res) send(res, 200L, server_metadata),
    `/metrics` = function(req, res) send(res, 200L, render_metrics(metrics), PROMETHEUS),
    `/openapi.json` = function(req, res) send(res, 200L, openapi)
  )

  router <- plumber::pr()
  router <- plumber::pr_set_parsers(router, "mlhub_raw")  # read_json_body reads the body
  for (route in names(ROUTE_METHODS)) {
    method <- ROUTE_METHODS[[route]]
    handler <- handlers[[sub("/versions/<version>", "", route, fixed = TRUE)]]
    router <- plumber::pr_handle(router, method, route, endpoint(route, handler),
                                 serializer = plumber::serializer_text())
    # Other methods get a JSON 405 naming the right one (plumber's own has no Allow value).
    others <- setdiff(ALL_METHODS, c(method, if (method == "GET") "HEAD"))
    router <- plumber::pr_handle(router, others, route, local({
      allowed <- method
      function(req, res, ...) {
        res$setHeader("Allow", allowed)
        observe(metrics, "other", 405L, 0)
        send(res, 405L, to_json(list(
          error = sprintf("%s is not allowed on %s: use %s", req$REQUEST_METHOD,
                          req$PATH_INFO, allowed),
          code = "method_not_allowed",
          detail = list(method = req$REQUEST_METHOD, path = req$PATH_INFO))))
      }
    }), serializer = plumber::serializer_text())
  }
  router <- plumber::pr_set_404(router, function(req, res) {
    observe(metrics, "other", 404L, 0)
    send(res, 404L, to_json(list(
      error = sprintf(paste0("there is no route %s: the model's routes are /v1/predict, ",
                             "/v1/metadata, /v2/models/<name>/infer, /metrics and /openapi.json"),
                      req$PATH_INFO),
      code = "not_found", detail = list(method = req$REQUEST_METHOD, path = req$PATH_INFO))))
  })
  router <- plumber::pr_set_error(router, function(req, res, err) error_response(res, err))
  if (nzchar(prefix)) {
    router <- plumber::pr_hook(router, "preroute", function(req, res, data) {
      path <- req$PATH_INFO
      if (startsWith(path, prefix)) {
        rest <- substring(path, nchar(prefix) + 1L)
        # an alias's URL, /models/<owner>/<name>@<alias>/...: the alias goes too
        if (startsWith(rest, "@")) rest <- sub("^@[^/]*", "", rest)
        if (!nzchar(rest) || startsWith(rest, "/")) req$PATH_INFO <- if (nzchar(rest)) rest else "/"
      }
    })
  }
  router
}
