# Who may call this model: the same rules as the Python runtime (mlhub.serving.auth).
#
# The publisher writes the access file (MLHUB_ACCESS_FILE):
#   {"users": ["alice"], "groups": ["analysts"], "key_hashes": ["<sha256 hex of mlhk_...>"]}
# A request carries a token (Authorization: token X, Authorization: Bearer X, or X-Api-Key: X).
# It is accepted if sha256(X) is one of key_hashes (an API key of this model), or if X is a
# JupyterHub token whose user is the owner, is listed in users or belongs to one of groups.
# The file is looked at once a second and re-read only when it changed; the hub is asked about
# a token once per ttl seconds (negative_ttl for rejected tokens), keyed by the token's sha256.

API_KEY_PREFIX <- "mlhk_"
AUTH_HOW <- "send 'Authorization: token <key>' with an API key of this model or your JupyterHub token"

sha256_hex <- function(text) {
  sodium::bin2hex(sodium::sha256(charToRaw(enc2utf8(text))))
}

access_list <- function(path, check_every = 1) {
  acl <- new.env(parent = emptyenv())
  acl$path <- path
  acl$check_every <- check_every
  acl$users <- character(0)
  acl$groups <- character(0)
  acl$key_hashes <- character(0)
  acl$stamp <- NULL
  acl$next_check <- 0
  access_refresh(acl)
  acl
}

access_current <- function(acl) {
  now <- as.numeric(Sys.time())
  if (now >= acl$next_check) {
    acl$next_check <- now + acl$check_every
    access_refresh(acl)
  }
  acl
}

access_refresh <- function(acl) {
  if (is.null(acl$path)) return(invisible(acl))
  info <- file.info(acl$path)
  if (is.na(info$size)) {
    if (!identical(acl$stamp, "missing")) {
      message(sprintf("access file %s does not exist: only the owner is allowed", acl$path))
      acl$users <- acl$groups <- acl$key_hashes <- character(0)
      acl$stamp <- "missing"
    }
    return(invisible(acl))
  }
  stamp <- paste(format(as.numeric(info$mtime), digits = 17), info$size)
  if (identical(stamp, acl$stamp)) return(invisible(acl))
  data <- tryCatch(jsonlite::read_json(acl$path), error = function(e) e)
  if (inherits(data, "error") || !is.list(data)) {
    # Keep the last good list: a half-written file must not lock everyone out.
    message(sprintf("access file %s is unreadable, keeping the previous one", acl$path))
    return(invisible(acl))
  }
  acl$users <- as.character(unlist(data$users))
  acl$groups <- as.character(unlist(data$groups))
  acl$key_hashes <- tolower(as.character(unlist(data$key_hashes)))
  acl$stamp <- stamp
  invisible(acl)
}

# GET {api_url}/user with the token: the user model, or NULL if the hub rejects the token.
ask_hub <- function(api_url, token, timeout) {
  handle <- curl::new_handle(timeout = timeout, connecttimeout = timeout)
  curl::handle_setheaders(handle, Authorization = paste("token", token),
                          Accept = "application/json")
  reply <- tryCatch(curl::curl_fetch_memory(paste0(api_url, "/user"), handle = handle),
                    error = function(e) e)
  if (inherits(reply, "error")) {
    fail(503L, "auth_unavailable", sprintf(
      "JupyterHub could not be reached to check the token (%s); try again shortly",
      conditionMessage(reply)))
  }
  if (reply$status_code %in% c(401L, 403L, 404L)) return(NULL)
  if (reply$status_code != 200L) {
    fail(503L, "auth_unavailable", sprintf(
      "JupyterHub answered %d when asked about the token; try again shortly", reply$status_code),
      list(hub_status = reply$status_code))
  }
  jsonlite::parse_json(rawToChar(reply$content))
}

hub_users <- function(api_url, ttl = 60, negative_ttl = 5, timeout = 5, ask = ask_hub) {
  hub <- new.env(parent = emptyenv())
  hub$api_url <- api_url
  hub$ttl <- ttl
  hub$negative_ttl <- negative_ttl
  hub$timeout <- timeout
  hub$ask <- ask
  hub$cache <- new.env(parent = emptyenv())
  hub
}

# JupyterHub token -> list(name, groups), or NULL; cached by the token's digest.
hub_user <- function(hub, token, digest) {
  now <- as.numeric(Sys.time())
  hit <- hub$cache[[digest]]
  if (!is.null(hit) && hit$until > now) return(hit$user)
  model <- hub$ask(hub$api_url, token, hub$timeout)
  user <- NULL
  if (is.list(model) && is.character(model$name) && nzchar(model$name)) {
    name <- model$name
    kind <- model$kind %||% "user"
    if (kind != "user") name <- paste0(kind, ":", name)  # a service must not pass as a user
    user <- list(name = name, groups = as.character(unlist(model$groups)))
  }
  if (length(hub$cache) >= 10000) hub$cache <- new.env(parent = emptyenv())
  assign(digest, list(until = now + if (is.null(user)) hub$negative_ttl else hub$ttl,
                      user = user), envir = hub$cache)
  user
}

bearer_token <- function(authorization, api_key = NULL) {
  if (!is.null(authorization) && nzchar(authorization)) {
    parts <- regmatches(trimws(authorization), regexpr(" ", trimws(authorization)), invert = TRUE)[[1]]
    scheme <- parts[1]
    token <- if (length(parts) > 1) trimws(parts[2]) else ""
    if (!(tolower(scheme) %in% c("token", "bearer")) || !nzchar(token)) {
      fail(401L, "unauthorized",
           sprintf("the Authorization scheme '%s' is not supported: %s", scheme, AUTH_HOW),
           list(scheme = scheme))
    }
    return(token)
  }
  if (!is.null(api_key) && nzchar(api_key)) return(trimws(api_key))
  fail(401L, "unauthorized", paste0("this model needs a token: ", AUTH_HOW))
}

authenticator <- function(acl, hub = NULL, owner = NULL) {
  list(acl = acl, hub = hub, owner = owner)
}

# Who is calling ("key:<digest prefix>" or "user:<name>"), or a 401/403 error.
auth_check <- function(auth, authorization, api_key = NULL) {
  token <- bearer_token(authorization, api_key)
  digest <- sha256_hex(token)
  acl <- access_current(auth$acl)
  if (digest %in% acl$key_hashes) return(paste0("key:", substr(digest, 1, 12)))
  if (startsWith(token, API_KEY_PREFIX)) {
    # a key minted a moment ago works at once (as in the Python runtime): look at the file now
    access_refresh(acl)
    if (digest %in% acl$key_hashes) return(paste0("key:", substr(digest, 1, 12)))
    fail(401L, "unauthorized", paste(  # never forward an API key to the hub
      "this API key is not valid for this model (revoked, mistyped, or for another model):",
      "create a key for this model in the publisher"))
  }
  if (is.null(auth$hub)) {
    fail(401L, "unauthorized", paste(
      "the token is not an API key of this model, and this server cannot check JupyterHub",
      "tokens (JUPYTERHUB_API_URL is not set): use an API key"))
  }
  user <- hub_user(auth$hub, token, digest)
  if (is.null(user)) {
    fail(401L, "unauthorized", paste0(
      "the token is neither an API key of this model nor a valid JupyterHub token: ", AUTH_HOW))
  }
  name <- user$name
  if (identical(name, auth$owner) || name %in% acl$users || any(user$groups %in% acl$groups)) {
    return(paste0("user:", name))
  }
  fail(403L, "forbidden", sprintf(
    "user '%s' may not call this model: ask its owner to share it with you or with one of your groups",
    name), list(user = name))
}
