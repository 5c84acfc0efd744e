# The OpenAPI 3.1 description of one served model, built once from its signature; the same
# document as the Python runtime's (mlhub.serving.openapi), so clients see one contract.

JSON_TYPE <- list(
  double = list(type = I(c("number", "null"))), float = list(type = I(c("number", "null"))),
  long = list(type = "integer"),
  integer = list(type = "integer", minimum = -2^31, maximum = 2^31 - 1),
  boolean = list(type = "boolean"), string = list(type = I(c("string", "null")))
)

# An input's JSON Schema; a model that does not take missing numbers gets no null in its number
# inputs (the runtime refuses them: schema$refuse_missing).
input_schema <- function(entry, takes_missing = TRUE) {
  if (identical(entry$type, "category")) {
    return(list(enum = c(as.list(as.character(unlist(entry$levels))), list(NULL)),
                description = "category"))
  }
  schema <- c(JSON_TYPE[[entry$type]], list(description = entry$type))
  if (!takes_missing && entry$type %in% c("double", "float")) {
    schema$type <- "number"
    schema$description <- paste0(entry$type, ", no missing values (the model does not accept them)")
  }
  schema
}

error_ref <- function(description) {
  list(description = description,
       content = list(`application/json` = list(schema = list(`$ref` = "#/components/schemas/Error"))))
}

build_spec <- function(served, owner = NULL, prefix = "", auth = TRUE) {
  inputs <- served$manifest$signature$inputs
  if (length(inputs)) {
    names <- vapply(inputs, function(i) i$name, "")
    props <- lapply(inputs, input_schema, takes_missing = !isTRUE(served$schema$refuse_missing))
    names(props) <- names
    record <- list(type = "object", properties = props, required = I(names),
                   additionalProperties = FALSE)
    row <- list(type = "array", prefixItems = unname(props), items = FALSE,
                minItems = length(inputs),
                description = paste("values in the order", paste(names, collapse = ", ")))
    columns <- list(type = "array", items = list(enum = I(names)))
  } else {
    record <- list(type = "object")
    row <- list(type = "array")
    columns <- list(type = "array", items = list(type = "string"))
  }
  ref <- function(name) list(`$ref` = paste0("#/components/schemas/", name))
  predict_request <- list(oneOf = list(
    list(type = "object", required = I("instances"), properties = list(instances = list(
      oneOf = list(list(type = "array", items = ref("Record")),
                   list(type = "array", items = ref("Row"))), minItems = 1))),
    list(type = "object", required = I(c("columns", "data")), properties = list(
      columns = columns, data = list(type = "array", items = list(type = "array"), minItems = 1)))
  ))
  if (length(served$manifest$example)) {
    predict_request$example <- list(instances = served$manifest$example)
  }
  errors <- list(
    `400` = error_ref("The input does not match the signature (the message says how)"),
    `401` = error_ref("No token, or a token that is not valid"),
    `403` = error_ref("The token's user may not call this model"),
    `413` = error_ref("The body is larger than the server's limit"),
    `415` = error_ref("The body is neither JSON nor of a type this route takes"),
    `422` = error_ref("The model raised on this input"),
    `503` = error_ref("The model is not loaded"))
  name_param <- list(name = "name", `in` = "path", required = TRUE, schema = list(type = "string"))
  public <- list(security = list())
  json_body <- function(schema) {
    list(required = TRUE, content = list(`application/json` = list(schema = schema)))
  }
  tensor <- list(type = "object", required = I(c("name", "shape", "datatype", "data")),
                 properties = list(name = list(type = "string"),
                                   shape = list(type = "array", items = list(type = "integer")),
                                   datatype = list(type = "string"), data = list(type = "array")))
  paths <- list(
    `/healthz` = list(get = c(list(summary = "The process is alive"), public,
                              list(responses = list(`200` = list(description = "alive"))))),
    `/readyz` = list(get = c(list(summary = "The model is loaded and can predict"), public,
                             list(responses = list(`200` = list(description = "ready"),
                                                   `503` = error_ref("Not ready; says why"))))),
    `/v1/metadata` = list(get = list(
      summary = "Name, owner, version, flavor, signature, example, R packages",
      responses = list(`200` = list(description = "metadata")))),
    `/v1/predict` = list(post = list(
      summary = "Predict rows given as records, rows or columns",
      requestBody = json_body(ref("PredictRequest")),
      responses = c(list(`200` = list(description = "OK", content = list(
        `application/json` = list(schema = ref("PredictResponse"))))), errors))),
    `/v2/models/{name}` = list(get = list(
      summary = "Open Inference Protocol model metadata", parameters = list(name_param),
      responses = list(`200` = list(description = "metadata"), `404` = error_ref("Another model")))),
    `/v2/models/{name}/ready` = list(get = list(
      summary = "Open Inference Protocol model readiness", parameters = list(name_param),
      responses = list(`200` = list(description = "ready"), `404` = error_ref("Another model"),
                       `503` = error_ref("Not ready")))),
    `/v2/models/{name}/infer` = list(post = list(
      summary = "Open Inference Protocol inference", parameters = list(name_param),
      requestBody = json_body(list(type = "object", required = I("inputs"), properties = list(
        id = list(type = "string"), inputs = list(type = "array", items = tensor, minItems = 1),
        outputs = list(type = "array", items = list(type = "object", properties = list(
          name = list(enum = I("predict")))))))),
      responses = c(list(`200` = list(description = "outputs"), `404` = error_ref("Another model")),
                    errors))),
    `/v2` = list(get = list(
      summary = "Open Inference Protocol server metadata (name, version, extensions)",
      responses = list(`200` = list(description = "metadata")))),
    `/v2/health/live` = list(get = c(list(summary = "Open Inference Protocol liveness"), public,
                                     list(responses = list(`200` = list(description = "live"))))),
    `/v2/health/ready` = list(get = c(list(summary = "Open Inference Protocol readiness"), public,
                                      list(responses = list(`200` = list(description = "ready"),
                                                            `503` = error_ref("Not ready"))))),
    `/metrics` = list(get = list(summary = "Prometheus metrics", responses = list(
      `200` = list(description = "text exposition format")))),
    `/openapi.json` = list(get = list(summary = "This document", responses = list(
      `200` = list(description = "OpenAPI 3.1"))))
  )
  # each /v2/models/{name} route has a /versions/{version} twin (404 for another version)
  version_param <- list(name = "version", `in` = "path", required = TRUE,
                        schema = list(type = "string"),
                        description = "the live version (404 for any other)")
  for (route in c("", "/ready", "/infer")) {
    item <- paths[[paste0("/v2/models/{name}", route)]]
    paths[[paste0("/v2/models/{name}/versions/{version}", route)]] <- lapply(item, function(op) {
      op$parameters <- c(op$parameters, list(version_param))
      op$responses[["404"]] <- error_ref("Another model or version")
      op
    })
  }
  description <- served$manifest$description %||% ""
  if (!is.null(owner)) description <- paste0(description, "\n\nOwner: ", owner)
  spec <- list(
    openapi = "3.1.0",
    info = list(title = sprintf("%s (mlhub model)", served$name),
                version = served$version %||% "unknown", description = description),
    servers = list(list(url = if (nzchar(prefix)) prefix else "/")),
    paths = paths,
    components = list(schemas = list(
      Record = record, Row = row, PredictRequest = predict_request,
      PredictResponse = list(type = "object", required = I("predictions"),
                             properties = list(predictions = list(type = "array"))),
      Error = list(type = "object", required = I(c("error", "code")), properties = list(
        error = list(type = "string", description = "what was wrong and how to fix it"),
        code = list(type = "string"), detail = setNames(list(), character(0))))))
  )
  if (auth) {
    spec$components$securitySchemes <- list(
      token = list(type = "apiKey", `in` = "header", name = "Authorization",
                   description = "'token <API key or JupyterHub token>'"),
      bearer = list(type = "http", scheme = "bearer"))
    spec$security <- list(list(token = I(list())), list(bearer = I(list())))
  }
  spec
}
