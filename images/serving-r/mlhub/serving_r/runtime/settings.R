# The serving runtime's settings, read once from the environment (the same variables as the
# Python runtime, see images/serving-python/README.md). Every limit is a setting.

env_flag <- function(key, default) {
  raw <- tolower(trimws(Sys.getenv(key, "")))
  if (!nzchar(raw)) return(default)
  if (raw %in% c("on", "true", "1", "yes")) return(TRUE)
  if (raw %in% c("off", "false", "0", "no")) return(FALSE)
  stop(sprintf("%s=%s is not valid: use 'on' or 'off'", key, raw), call. = FALSE)
}

env_fraction <- function(key, default) {
  raw <- tolower(trimws(Sys.getenv(key, "")))
  if (!nzchar(raw)) return(default)
  if (raw %in% c("on", "true", "yes")) return(1)
  if (raw %in% c("off", "false", "no")) return(0)
  value <- suppressWarnings(as.numeric(raw))
  if (is.na(value)) stop(sprintf("%s=%s is not a number", key, raw), call. = FALSE)
  if (value < 0 || value > 1) {
    stop(sprintf("%s=%s is not a fraction between 0 and 1", key, raw), call. = FALSE)
  }
  value
}

env_int <- function(key, default, minimum = 1L) {
  raw <- trimws(Sys.getenv(key, ""))
  if (!nzchar(raw)) return(as.integer(default))
  value <- suppressWarnings(as.numeric(raw))
  if (is.na(value) || value != floor(value)) {
    stop(sprintf("%s=%s is not a whole number", key, raw), call. = FALSE)
  }
  if (value < minimum) {
    stop(sprintf("%s=%s is too small: the minimum is %d", key, raw, minimum), call. = FALSE)
  }
  as.integer(value)
}

normalize_prefix <- function(prefix) {
  prefix <- gsub("^/+|/+$", "", trimws(prefix %||% ""))
  if (nzchar(prefix)) paste0("/", prefix) else ""
}

`%||%` <- function(a, b) if (is.null(a) || length(a) == 0 || identical(a, "")) b else a

read_settings <- function() {
  bundle <- trimws(Sys.getenv("MLHUB_BUNDLE", ""))
  if (!nzchar(bundle)) {
    stop("MLHUB_BUNDLE is not set: point it at a model bundle directory", call. = FALSE)
  }
  list(
    bundle = bundle,
    url_prefix = normalize_prefix(Sys.getenv("MLHUB_URL_PREFIX", "")),
    owner = Sys.getenv("MLHUB_MODEL_OWNER", "") %||% NULL,
    version = Sys.getenv("MLHUB_MODEL_VERSION", "") %||% NULL,
    auth = env_flag("MLHUB_AUTH", TRUE),
    access_file = Sys.getenv("MLHUB_ACCESS_FILE", "") %||% NULL,
    hub_api_url = sub("/+$", "", Sys.getenv("JUPYTERHUB_API_URL", "")) %||% NULL,
    max_body_bytes = env_int("MLHUB_MAX_BODY_BYTES", 16L * 1024L * 1024L),
    request_timeout = env_int("MLHUB_REQUEST_TIMEOUT", 60L),
    # One R process serves one request at a time; more workers are more processes
    # (behind nginx in the serving-r image). Reported in /metrics.
    workers = env_int("MLHUB_WORKERS", 1L),
    request_log = tolower(trimws(Sys.getenv("MLHUB_REQUEST_LOG", ""))) %||% "errors",
    request_log_rate = env_int("MLHUB_REQUEST_LOG_RATE", 20L),
    inference_log_sample = env_fraction("MLHUB_INFERENCE_LOG", 0),
    inference_log_url = Sys.getenv("MLHUB_INFERENCE_LOG_URL", "") %||% NULL,
    inference_log_buffer = env_int("MLHUB_INFERENCE_LOG_BUFFER", 10000L),
    inference_log_flush_seconds = env_int("MLHUB_INFERENCE_LOG_FLUSH_SECONDS", 2L)
  )
}
