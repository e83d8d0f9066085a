package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import static dev.morastream.ops.serve.Responses.error;
import static dev.morastream.ops.serve.Responses.json;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.supervisor.AuditLog;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.Route;

/**
 * The adapter endpoints and the admin token that guards them: {@code GET /v1/adapters} (registry,
 * aliases, audit; file paths only for the admin token) and {@code POST
 * /v1/adapters/{domain}/promote|rollback} (admin only), run on one admin thread.
 */
final class AdminRoutes extends AllDirectives implements AutoCloseable {
    /** Decisions of the audit log that {@code GET /v1/adapters} shows (the latest). */
    static final int AUDIT_LINES = 200;

    private final ServingPool pool;
    private final HttpApi.Settings settings;
    private final HttpApi.AliasMover mover;
    private final Path auditLog;
    private final ExecutorService admin = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "mora-http-admin");
        t.setDaemon(true);
        return t;
    });

    /**
     * @param mover how promote/rollback move an alias ({@code null}: the registry's alias, then the pool)
     * @param auditLog the promotion audit log (JSONL) that {@code GET /v1/adapters} shows, or {@code null}
     */
    AdminRoutes(ServingPool pool, HttpApi.Settings settings, HttpApi.AliasMover mover, Path auditLog) {
        this.pool = pool;
        this.settings = settings;
        this.auditLog = auditLog;
        // runs on the admin thread that called it (which waits for the returned stage)
        this.mover = mover != null ? mover : (target, cause) -> {
            try {
                pool.registry().orElseThrow().setAlias(target);
                pool.swap(target);
                return CompletableFuture.completedFuture(null);
            } catch (IOException | RuntimeException e) {
                return CompletableFuture.failedFuture(e);
            }
        };
    }

    // ---- the admin token ----

    /** Only with the admin token: 401 without a bearer token, 403 with a wrong one or when none is configured. */
    Route requireAdmin(Supplier<Route> inner) {
        return optionalHeaderValueByName("Authorization", h -> {
            if (h.isEmpty() || !h.get().startsWith("Bearer ")) {
                return complete(error(new ApiError(401, "authentication_error", "missing_token",
                        "admin endpoints need 'Authorization: Bearer <token>'")));
            }
            String token = settings.adminToken();
            if (token == null || token.isEmpty() || !HttpApi.bearerIs(token, h)) {
                return complete(error(new ApiError(403, "permission_error", "bad_token",
                        token == null || token.isEmpty() ? "admin endpoints are disabled (no admin token configured)" : "wrong admin token")));
            }
            return inner.get();
        });
    }

    /** Whether the request carries the admin token. */
    Route isAdmin(Function<Boolean, Route> inner) {
        return optionalHeaderValueByName("Authorization", h -> {
            String token = settings.adminToken();
            return inner.apply(token != null && !token.isEmpty() && HttpApi.bearerIs(token, h));
        });
    }

    // ---- GET /v1/adapters ----

    /** {@code GET /v1/adapters}: {@code audit_lines_skipped} when the audit log was read, {@code audit_error} when not. */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    record Adapters(String base, List<Domain> domains, List<JsonNode> audit,
            @JsonInclude(JsonInclude.Include.NON_NULL) Integer auditLinesSkipped, @JsonInclude(JsonInclude.Include.NON_NULL) String auditError) {}

    /**
     * @param alias the registry's alias (null: none)
     * @param serving what the pool serves (null: nothing)
     */
    record Domain(String domain, String alias, String serving, List<Version> versions) {}

    /** @param dir the version's directory, for the admin token only (absent otherwise) */
    record Version(String version, String created, Map<String, Double> scores, Map<String, String> info,
            @JsonInclude(JsonInclude.Include.NON_NULL) String dir) {}

    /**
     * Registry, aliases and audit; file paths (a version's directory, path-valued info and audit
     * fields) only for the admin token.
     */
    Route adapters(boolean admin) {
        List<Domain> domains = new ArrayList<>();
        Optional<AdapterRegistry> reg = pool.registry();
        if (reg.isPresent()) {
            try {
                for (String d : reg.get().domains()) {
                    List<Version> versions = new ArrayList<>();
                    for (AdapterRegistry.Entry e : reg.get().versions(d)) {
                        Map<String, String> info = new LinkedHashMap<>();
                        e.info().forEach((key, val) -> {
                            if (admin || !isPath(val)) {
                                info.put(key, val);
                            }
                        });
                        versions.add(new Version(e.version().toString(), e.created().toString(), e.scores(), info,
                                admin ? e.dir().toString() : null));
                    }
                    domains.add(new Domain(d, reg.get().alias(d).map(AdapterVersion::toString).orElse(null),
                            pool.serving(d).map(AdapterVersion::toString).orElse(null), versions));
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        List<JsonNode> audit = new ArrayList<>();
        Integer skipped = null;
        String auditError = null;
        try {
            // torn or corrupt lines are skipped (and counted), never a 500
            AuditLog.Tail tail = AuditLog.tail(auditLog, AUDIT_LINES);
            tail.records().forEach(entry -> audit.add(admin ? entry : withoutPaths(entry)));
            skipped = tail.skipped();
        } catch (IOException e) {
            auditError = "cannot read the audit log: " + e.getMessage();
        }
        return complete(json(200, new Adapters(pool.baseName(), domains, audit, skipped, auditError)));
    }

    /** Whether a string names a file: an absolute path. */
    static boolean isPath(String v) {
        return v != null && (v.startsWith("/") || v.matches("^[A-Za-z]:[\\\\/].*") || v.startsWith("file:"));
    }

    /** A copy of {@code n} without string fields that are paths. */
    private static JsonNode withoutPaths(JsonNode n) {
        if (n.isObject()) {
            ObjectNode o = JsonNodeFactory.instance.objectNode();
            n.fields().forEachRemaining(e -> {
                if (!(e.getValue().isTextual() && isPath(e.getValue().asText()))) {
                    o.set(e.getKey(), withoutPaths(e.getValue()));
                }
            });
            return o;
        }
        if (n.isArray()) {
            ArrayNode a = JsonNodeFactory.instance.arrayNode();
            n.forEach(x -> {
                if (!(x.isTextual() && isPath(x.asText()))) {
                    a.add(withoutPaths(x));
                }
            });
            return a;
        }
        return n;
    }

    // ---- promote and rollback ----

    /** What a promote or rollback answers: the version served before and now. */
    record Moved(String domain, String previous, String serving) {}

    /** Promote (or roll back to) a version: the registry's alias moves, then the pool swaps. */
    Route move(String domain, JsonNode b, boolean rollback) {
        AdapterRegistry reg = pool.registry().orElseThrow(() -> new ApiError(404, "invalid_request_error", null, "this server has no adapter registry"));
        String name = b.hasNonNull("version") ? b.get("version").asText() : null;
        CompletableFuture<HttpResponse> done = CompletableFuture.supplyAsync(() -> {
            try {
                AdapterVersion.checkDomain(domain);
                Optional<AdapterVersion> current = pool.serving(domain);
                AdapterVersion target = target(reg, domain, name, rollback, current);
                if (reg.get(target).isEmpty() && !mover.fetch(target)) {
                    throw new ApiError(404, "invalid_request_error", "version_not_found", "no adapter version " + target);
                }
                if (rollback && current.isPresent() && target.compareTo(current.get()) >= 0) {
                    throw ApiError.badRequest("rollback goes to a version older than " + current.get() + "; use promote");
                }
                mover.move(target, rollback ? "rollback" : "promote").toCompletableFuture().get(60, TimeUnit.SECONDS);
                return json(200, new Moved(domain, current.map(AdapterVersion::toString).orElse(null),
                        pool.serving(domain).map(AdapterVersion::toString).orElse(null)));
            } catch (ApiError e) {
                return error(e);
            } catch (IllegalArgumentException e) {
                return error(ApiError.badRequest(e.getMessage()));
            } catch (IOException | UncheckedIOException e) {
                return error(new ApiError(500, "server_error", null, e.toString()));
            } catch (ExecutionException | TimeoutException e) {
                return error(new ApiError(500, "server_error", null, "moving the alias failed: " + (e.getCause() != null ? e.getCause() : e)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return error(new ApiError(503, "server_error", null, "interrupted"));
            }
        }, admin);
        return completeWithFuture(done);
    }

    /** The version named in the body, or for a rollback without one the newest older than {@code current}. */
    private static AdapterVersion target(AdapterRegistry reg, String domain, String name, boolean rollback, Optional<AdapterVersion> current) {
        AdapterVersion target;
        if (name != null) {
            target = AdapterVersion.parse(name);
        } else if (rollback) {
            target = current.flatMap(c -> {
                try {
                    return reg.versions(domain).stream().map(AdapterRegistry.Entry::version).filter(v -> v.compareTo(c) < 0).reduce((x, y) -> y);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }).orElseThrow(() -> ApiError.badRequest("no earlier version of " + domain + " to roll back to"));
        } else {
            throw ApiError.badRequest("give {\"version\": \"" + domain + "@vN\"}");
        }
        if (!target.domain().equals(domain)) {
            throw ApiError.badRequest(target + " is not a version of " + domain);
        }
        return target;
    }

    @Override
    public void close() {
        admin.shutdownNow();
    }
}
