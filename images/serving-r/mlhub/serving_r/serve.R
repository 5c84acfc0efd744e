#!/usr/bin/env Rscript
# Serve a model bundle with plumber (the serving contract of docs/design.md), or check one:
#
#   Rscript serve.R --bundle DIR --port P [--host H] [--prefix /models/u/m]
#   Rscript serve.R check --bundle DIR
#
# Other settings come from the MLHUB_* environment variables of the Python runtime
# (images/serving-r/README.md). Serving keeps this process's pid (the deployer supervises it)
# and loads the model before it listens; check loads the bundle, predicts its example and
# exits 0 with a JSON summary, or exits 1 with the reason on its last line.

script_dir <- function() {
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  dirname(normalizePath(file))
}
for (part in c("errors", "types", "settings", "auth", "schema", "model", "metrics", "requestlog", "inferencelog", "openapi", "v2", "app")) {
  source(file.path(script_dir(), "runtime", paste0(part, ".R")))
}

parse_args <- function(args) {
  out <- list()
  i <- 1
  while (i <= length(args)) {
    key <- sub("^--", "", args[i])
    if (!startsWith(args[i], "--") || i == length(args)) {
      stop(sprintf("unexpected argument '%s'", args[i]), call. = FALSE)
    }
    out[[key]] <- args[i + 1]
    i <- i + 2
  }
  out
}

check_main <- function(args) {
  opts <- parse_args(args)
  if (is.null(opts$bundle)) stop("--bundle is required", call. = FALSE)
  served <- load_served(opts$bundle)
  outcome <- tryCatch({
    predictions <- predict_example(served)
    summary <- list(ok = TRUE, name = served$name, flavor = served$manifest$flavor,
                    load_seconds = round(served$load_seconds, 3),
                    example_rows = length(served$manifest$example),
                    r_version = paste(R.version$major, R.version$minor, sep = "."))
    if (is.null(predictions)) {
      summary$warning <- "the bundle has no example, so no prediction was tried"
    } else {
      summary$predictions <- I(head(predictions, 5))
    }
    cat(to_json(summary), "\n", sep = "")
    0L
  }, error = function(e) {
    cat(sprintf("mlhub serving-r check: %s will not serve: %s\n", opts$bundle,
                conditionMessage(e)), file = stderr())
    1L
  })
  quit(status = outcome)
}

serve_main <- function(args) {
  opts <- parse_args(args)
  if (!is.null(opts$bundle)) Sys.setenv(MLHUB_BUNDLE = opts$bundle)
  if (!is.null(opts$prefix)) Sys.setenv(MLHUB_URL_PREFIX = opts$prefix)
  if (!is.null(opts$workers)) Sys.setenv(MLHUB_WORKERS = opts$workers)
  settings <- read_settings()
  port <- as.integer(opts$port %||% "8080")
  host <- opts$host %||% "127.0.0.1"
  served <- load_served(settings$bundle, version = settings$version)
  if (served$ready) {
    message(sprintf("loaded model '%s' (%s) from %s in %.3f s", served$name,
                    served$manifest$flavor %||% "rds", settings$bundle, served$load_seconds))
  }
  authenticate <- NULL
  if (settings$auth) {
    auth <- authenticator(
      access_list(settings$access_file),
      hub = if (is.null(settings$hub_api_url)) NULL else hub_users(settings$hub_api_url),
      owner = settings$owner)
    authenticate <- function(authorization, api_key) auth_check(auth, authorization, api_key)
  }
  inference_log <- new_inference_log(settings)
  router <- create_app(settings, served, authenticate = authenticate,
                       inference_log = inference_log)
  start_inference_log(inference_log)
  message(sprintf("serving on http://%s:%d%s", host, port, settings$url_prefix))
  plumber::pr_run(router, host = host, port = port, docs = FALSE, quiet = TRUE)
}

main <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  if (length(args) && args[1] == "check") check_main(args[-1]) else serve_main(args)
}

main()
