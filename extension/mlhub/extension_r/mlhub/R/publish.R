# mlhub::publish(): from a fitted model in an R kernel to a live, authenticated endpoint.
#
# The R side captures what only R knows (the saveRDS bytes, the example's column types and
# factor levels, the R version, the packages the model comes from) and sends it to its own
# notebook server's mlhub extension (POST mlhub/api/models/<name>/r-bundle) with the server's
# hub token. The extension writes the bundle (the format lives in Python only) and uploads it
# to the publisher; this side then follows the publisher's events to show progress.

NAME_RE <- "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
EXAMPLE_ROWS <- 5L
PARITY_ROWS <- 1000L  # validation rows kept for the parity check (a fixed sample)
STEPS <- c("bundle", "upload", "start", "ready")
EVENT_STEPS <- list(received = c("start", 0.1), unpacked = c("start", 0.4),
                    starting = c("start", 0.7), ready = c("ready", 0.25),
                    switched = c("ready", 0.5), drained = c("ready", 0.75),
                    done = c("ready", 1))

mlhub_stop <- function(message, detail = NULL) {
  stop(structure(class = c("mlhub_error", "error", "condition"),
                 list(message = message, call = NULL, detail = detail)))
}

check_name <- function(name) {
  if (!is.character(name) || length(name) != 1 || is.na(name) || !grepl(NAME_RE, name)) {
    mlhub_stop(sprintf(paste0(
      "model name %s is not valid: use 1-63 lowercase letters, digits or '-', starting and ",
      "ending with a letter or digit (a DNS label), e.g. 'defect-r'"),
      if (is.character(name) && length(name) == 1) sprintf("'%s'", name) else deparse(name)))
  }
  name
}

has_predict <- function(model) {
  any(vapply(class(model), function(cls) {
    !is.null(utils::getS3method("predict", cls, optional = TRUE))
  }, TRUE))
}

# The input signature of an example data.frame: one entry per column, in order.
describe_example <- function(example) {
  if (!is.data.frame(example)) {
    mlhub_stop(sprintf(paste0(
      "the example must be a data.frame with the model's input columns (e.g. head(df)), ",
      "not a %s"), class(example)[1]))
  }
  if (nrow(example) == 0 || ncol(example) == 0) {
    mlhub_stop("the example is empty: pass a few rows of the model's input, e.g. head(df)")
  }
  inputs <- lapply(names(example), function(col) {
    values <- example[[col]]
    type <- if (is.factor(values)) "category"
      else if (is.integer(values)) "integer"
      else if (is.numeric(values)) "double"
      else if (is.logical(values)) "boolean"
      else if (is.character(values)) "string"
      else mlhub_stop(sprintf(paste0(
        "column '%s' of the example is a %s; supported column types are numeric, integer, ",
        "logical, character and factor (convert it, or drop it from the example)"),
        col, class(values)[1]))
    entry <- list(name = col, type = type)
    if (type == "category") entry$levels <- I(levels(values))
    entry
  })
  list(kind = "dataframe", inputs = inputs)
}

# Example rows as records (factors as their labels, NA as null).
example_records <- function(example, n = EXAMPLE_ROWS) {
  rows <- utils::head(example, n)
  rows[] <- lapply(rows, function(v) if (is.factor(v)) as.character(v) else v)
  jsonlite::fromJSON(jsonlite::toJSON(rows, dataframe = "rows", na = "null", digits = NA),
                     simplifyVector = FALSE)
}

# A model's answer as JSON values, as the R serving runtime writes it (factors as labels).
answer_values <- function(predicted) {
  if (is.factor(predicted)) predicted <- as.character(predicted)
  if (is.matrix(predicted)) predicted <- unname(predicted)
  if (!is.data.frame(predicted) && !is.matrix(predicted)) predicted <- unname(as.vector(predicted))
  jsonlite::fromJSON(jsonlite::toJSON(predicted, dataframe = "rows", na = "null", digits = NA),
                     simplifyVector = FALSE)
}

# The parity record (mlhub.bundle.parity): the example's first rows and up to PARITY_ROWS rows
# of `validate` as JSON records, and what the model answers for them here. The serving process
# must answer the same before the version takes traffic. The whole example is predicted, so a
# model that fails on any of its rows fails here, in the notebook, with the model's reason.
parity_record <- function(model, example, validate, predict_args, tolerance) {
  answers_for <- function(what, frame) {
    predicted <- tryCatch(
      do.call(stats::predict, c(list(model, newdata = frame), predict_args)),
      error = function(e) mlhub_stop(sprintf(paste0(
        "the model failed to predict on %s (%s); pass %s with the columns and types the ",
        "model was trained on"), what, conditionMessage(e), what)))
    answers <- answer_values(predicted)
    if (length(answers) != nrow(frame)) {
      mlhub_stop(sprintf("the model returned %d predictions for %s's %d rows",
                         length(answers), what, nrow(frame)))
    }
    answers
  }
  tol <- check_tolerance(tolerance)
  rows <- example_records(example)
  predictions <- utils::head(answers_for("the example", example), EXAMPLE_ROWS)
  if (!is.null(validate)) {
    if (!is.data.frame(validate) || !identical(names(validate), names(example))) {
      mlhub_stop(sprintf(
        "validate must be a data.frame with the example's columns (%s)",
        paste(names(example), collapse = ", ")))
    }
    if (nrow(validate) > PARITY_ROWS) {
      validate <- validate[fixed_sample(nrow(validate), PARITY_ROWS), , drop = FALSE]
    }
    rows <- c(rows, example_records(validate, nrow(validate)))
    predictions <- c(predictions, answers_for("validate", validate))
  }
  list(instances = rows, predictions = predictions, rtol = tol$rtol, atol = tol$atol)
}

# The same sample every time, without touching the session's random numbers.
fixed_sample <- function(n, size) {
  had <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
  if (had) saved <- get(".Random.seed", envir = globalenv(), inherits = FALSE)
  on.exit(if (had) assign(".Random.seed", saved, envir = globalenv())
          else rm(".Random.seed", envir = globalenv()))
  set.seed(0L)
  sample.int(n, size)
}

check_tolerance <- function(tolerance) {
  tol <- list(rtol = 1e-6, atol = 1e-9)
  if (is.null(tolerance)) return(tol)
  if (is.numeric(tolerance) && length(tolerance) == 1 && is.null(names(tolerance))) {
    tolerance <- list(rtol = tolerance)
  }
  if (!is.list(tolerance) || !all(names(tolerance) %in% c("rtol", "atol"))) {
    mlhub_stop("tolerance is a relative tolerance (a number) or list(rtol = ..., atol = ...)")
  }
  for (n in names(tolerance)) {
    value <- tolerance[[n]]
    if (!is.numeric(value) || length(value) != 1 || is.na(value) || value < 0) {
      mlhub_stop(sprintf("the parity check's %s must be a number >= 0", n))
    }
    tol[[n]] <- value
  }
  tol
}

# The packages a model needs to be loaded and predicted: where its classes' predict methods
# and its class definitions come from, with their installed versions.
model_packages <- function(model) {
  found <- character(0)
  for (cls in class(model)) {
    method <- utils::getS3method("predict", cls, optional = TRUE)
    if (!is.null(method)) found <- c(found, environmentName(environment(method)))
    pkg <- attr(cls, "package")
    if (!is.null(pkg)) found <- c(found, pkg)
  }
  found <- unique(setdiff(found[nzchar(found)], c("base", "R_GlobalEnv")))
  lapply(found, function(p) list(name = p, version = as.character(utils::packageVersion(p))))
}

# What this session can publish, as JSON for JupyterLab's "Publish model" dialog (the R
# kernel's publish panel): the objects of `envir` with a predict() method, and its non-empty
# data frames to take the example from.
publish_candidates <- function(envir = globalenv()) {
  found <- mget(ls(envir), envir = envir)
  models <- Filter(has_predict, found)
  frames <- Filter(function(x) is.data.frame(x) && nrow(x) > 0 && ncol(x) > 0, found)
  jsonlite::toJSON(list(
    models = unname(Map(function(name, m) list(name = name, class = class(m)[[1]]),
                        names(models), models)),
    examples = unname(Map(function(name, f) list(name = name, rows = nrow(f), columns = ncol(f)),
                          names(frames), frames))
  ), auto_unbox = TRUE)
}

# ---------------------------------------------------------------- talking to the server

server_call <- function(method, path, body = NULL, query = NULL) {
  base <- Sys.getenv("JUPYTERHUB_SERVICE_URL")
  token <- Sys.getenv("JUPYTERHUB_API_TOKEN")
  if (!nzchar(base) || !nzchar(token)) {
    mlhub_stop(paste0(
      "mlhub::publish runs in a notebook started from mlhub (JupyterHub): ",
      "JUPYTERHUB_SERVICE_URL or JUPYTERHUB_API_TOKEN is not set in this R session"))
  }
  url <- paste0(sub("/*$", "/", base), "mlhub/api/", path)
  if (length(query)) url <- paste0(url, "?", paste(names(query), query, sep = "=", collapse = "&"))
  handle <- curl::new_handle(customrequest = method, timeout = 600)
  headers <- list(Authorization = paste("token", token), Accept = "application/json")
  if (!is.null(body)) {
    payload <- charToRaw(enc2utf8(as.character(
      jsonlite::toJSON(body, auto_unbox = TRUE, null = "null", na = "null", digits = NA))))
    curl::handle_setopt(handle, post = TRUE, postfieldsize = length(payload),
                        postfields = payload)
    headers$`Content-Type` <- "application/json"
  }
  do.call(curl::handle_setheaders, c(list(handle), headers))
  reply <- tryCatch(curl::curl_fetch_memory(url, handle = handle), error = function(e) {
    mlhub_stop(sprintf("the notebook server at %s could not be reached: %s", base,
                       conditionMessage(e)))
  })
  text <- rawToChar(reply$content)
  parsed <- if (nzchar(text)) tryCatch(jsonlite::fromJSON(text, simplifyVector = FALSE),
                                       error = function(e) NULL)
  list(status = reply$status_code, body = parsed, text = text)
}

fail_reply <- function(reply, what) {
  message <- if (is.list(reply$body) && is.character(reply$body$error)) reply$body$error
    else sprintf("HTTP %d: %s", reply$status, substr(reply$text, 1, 300))
  mlhub_stop(sprintf("%s: %s", what, message), reply$body$detail)
}

progress <- function(step, fraction, text) {
  done <- (match(step, STEPS) - 1 + fraction) / length(STEPS)
  width <- 24L
  filled <- round(done * width)
  cat(sprintf("[%s%s] %-6s %s\n", strrep("#", filled), strrep(".", width - filled), step, text))
  utils::flush.console()
}

follow_events <- function(name, version, since, timeout, alias = NULL) {
  deadline <- Sys.time() + timeout
  repeat {
    reply <- server_call("GET", sprintf("models/%s/events", name), query = list(since = since))
    if (reply$status != 200) fail_reply(reply, "could not follow the publish")
    for (event in reply$body$events) {
      since <- max(since, event$id)
      if (!identical(event$version, version)) next
      if (!identical(event$alias %||% "production", alias %||% "production")) next
      if (identical(event$step, "failed")) {
        mlhub_stop(paste("the model could not be started:", event$message))
      }
      mapped <- EVENT_STEPS[[event$step]]
      if (!is.null(mapped)) progress(mapped[1], as.numeric(mapped[2]), event$message)
      if (identical(event$step, "done")) return(invisible(TRUE))
    }
    if (Sys.time() > deadline) {
      mlhub_stop(sprintf("the model was not ready after %d s; see mlhub models events %s",
                         as.integer(timeout), name))
    }
    Sys.sleep(0.2)
  }
}

curl_snippet <- function(predict_url, example, key) {
  body <- jsonlite::toJSON(list(instances = utils::head(example, 2)), auto_unbox = TRUE,
                           null = "null", digits = NA)
  token <- if (is.null(key)) "$MLHUB_API_KEY" else key
  paste0(
    if (is.null(key)) paste0("# mint a key with mlhub::api_key(), then export MLHUB_API_KEY=mlhk_...\n") else "",
    sprintf("curl -sS -X POST '%s' \\\n", predict_url),
    sprintf("  -H \"Authorization: Bearer %s\" \\\n", token),
    "  -H \"Content-Type: application/json\" \\\n",
    sprintf("  -d '%s'", body))
}

# The publish's query: workers, the inference log as the publisher takes it (TRUE: every
# request, FALSE: off, a fraction: that share; NULL: the model's setting) and the alias.
publish_query <- function(workers, inference_log, alias = NULL) {
  query <- list()
  if (!is.null(workers)) query$workers <- as.integer(workers)
  if (!is.null(alias)) query$alias <- alias
  if (isTRUE(inference_log)) query$inference_log <- "on"
  else if (isFALSE(inference_log)) query$inference_log <- "off"
  else if (is.numeric(inference_log)) query$inference_log <- format(inference_log)
  else if (!is.null(inference_log)) {
    mlhub_stop("inference_log is TRUE, FALSE or the share of requests to keep, e.g. 0.1")
  }
  query
}

#' Publish a fitted R model as an authenticated REST endpoint.
#' inference_log = TRUE keeps every request's inputs, prediction, latency and status (0.1: a
#' tenth of them), read back in Python with mlhub.inference_log(name).
#' alias = "staging" serves the version at .../<name>@staging/ only, production keeps serving.
publish <- function(model, name, example = NULL, description = "", predict_args = list(),
                    workers = NULL, timeout = 600, validate = NULL, tolerance = NULL,
                    inference_log = NULL, alias = NULL) {
  check_name(name)
  progress("bundle", 0, "checking the model")
  if (is.null(model) || !has_predict(model)) {
    mlhub_stop(sprintf(paste0(
      "a %s is not a model: publish a fitted model with a predict() method ",
      "(lm, glm, randomForest, ...)"), class(model)[1]))
  }
  if (!is.list(predict_args) || (length(predict_args) && is.null(names(predict_args)))) {
    mlhub_stop("predict_args must be a named list of predict() arguments, e.g. list(type = 'response')")
  }
  signature <- NULL
  records <- NULL
  parity <- NULL
  if (!is.null(example)) {
    signature <- describe_example(example)
    parity <- parity_record(model, example, validate, predict_args, tolerance)
    records <- utils::head(parity$instances, EXAMPLE_ROWS)
  } else if (!is.null(validate)) {
    mlhub_stop("validate needs an example too: publish with example = head(df), validate = test_df")
  }
  rds <- tempfile(fileext = ".rds")
  on.exit(unlink(rds), add = TRUE)
  saveRDS(model, rds)
  packages <- model_packages(model)
  progress("bundle", 1, sprintf("%s model, R %s, packages: %s", class(model)[1],
                                getRversion(),
                                paste(vapply(packages, function(p) p$name, ""), collapse = ", ")))
  first <- server_call("GET", sprintf("models/%s", name))$status == 404
  progress("upload", 0, sprintf("uploading %.1f kB", file.size(rds) / 1000))
  reply <- server_call("POST", sprintf("models/%s/r-bundle", name), body = list(
    model_rds = gsub("\\s", "", jsonlite::base64_enc(readBin(rds, "raw", file.size(rds)))),
    signature = signature, example = records, r_version = as.character(getRversion()),
    r_packages = packages, model_class = class(model)[1], description = description,
    parity = parity,
    predict_args = if (length(predict_args)) predict_args else structure(list(), names = character(0))
  ), query = publish_query(workers, inference_log, alias))
  if (!reply$status %in% c(200L, 202L)) fail_reply(reply, "the publish was refused")
  version <- reply$body$version %||% reply$body$current_version
  progress("upload", 1, "uploaded")
  if (reply$status == 202L) {
    follow_events(name, version, reply$body$event_id - 1, timeout, alias)
  } else {
    progress("ready", 1, "this version is already live")
  }
  info <- server_call("GET", sprintf("models/%s", name))
  if (info$status != 200) fail_reply(info, "the model could not be read back")
  key <- NULL
  if (first) {
    minted <- server_call("POST", sprintf("models/%s/keys", name),
                          body = list(description = "minted by mlhub::publish"))
    if (minted$status != 201) fail_reply(minted, "no API key could be created")
    key <- minted$body$key
  }
  url <- info$body$url
  for (a in info$body$aliases) if (identical(a$name, alias)) url <- a$url
  predict_url <- paste0(url, "v1/predict")
  snippet <- curl_snippet(predict_url, records, key)
  cat(sprintf("\n%s is %s at %s (version %s)\nPredict: %s\n", name, info$body$status,
              url, substr(version, 1, 19), predict_url))
  if (!is.null(key)) cat(sprintf("API key (shown once, store it now): %s\n", key))
  cat("\n", snippet, "\n", sep = "")
  invisible(list(name = name, owner = info$body$owner, version = version,
                 status = info$body$status, url = url, predict_url = predict_url,
                 api_key = key, curl = snippet))
}

#' Mint an API key for your model (shown only this once).
api_key <- function(name, description = "minted by mlhub::api_key") {
  check_name(name)
  reply <- server_call("POST", sprintf("models/%s/keys", name), body = list(description = description))
  if (reply$status != 201) fail_reply(reply, "no API key could be created")
  reply$body$key
}

`%||%` <- function(a, b) if (is.null(a)) b else a
