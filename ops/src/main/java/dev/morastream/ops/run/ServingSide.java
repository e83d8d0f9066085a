package dev.morastream.ops.run;

import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.ops.metrics.Metrics;
import dev.morastream.ops.serve.ChatTemplate;
import dev.morastream.ops.serve.HttpApi;
import dev.morastream.actors.serving.ServingPool;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What answers requests: the serving pool on the base model (its actors in the job's system), the
 * OpenAI-compatible HTTP API in front of it, and the bound port. Serving reads the registry's
 * aliases at start, so a restarted job serves what it served before.
 */
final class ServingSide implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(ServingSide.class);

    private final ServingPool pool;
    private final HttpApi api;
    private ServerBinding binding;
    private CompletableFuture<Void> warm = CompletableFuture.completedFuture(null);
    private final String host;

    private ServingSide(ServingPool pool, HttpApi api, String host) {
        this.pool = pool;
        this.api = api;
        this.host = host;
    }

    /** Binds the API on the configured address and starts the readiness generation. */
    static ServingSide start(JobConfig cfg, ModelSide models, AdapterRegistry registry, Metrics metrics, ActorSystem<?> system,
            HttpApi.AliasMover mover) throws Exception {
        JobConfig.Http h = cfg.http();
        ServingPool pool = new ServingPool(models.model(), models.tokenizer(), cfg.baseModel().getFileName().toString(), registry,
                new ServingPool.Options(h.workers(), h.queue(), h.maxLoaded()), metrics.registry(), system);
        HttpApi api = new HttpApi(pool, metrics, new HttpApi.Settings(h.adminToken().isBlank() ? null : h.adminToken(),
                h.maxBodyBytes(), h.maxTokens()).withApiKey(h.apiKey()).withMaxN(h.maxN()).withAllowedHosts(h.allowedHosts())
                .withRequestTimeout(h.requestTimeout()).withServing(cfg.cluster().serves()), mover, cfg.auditLog(), ChatTemplate.forModel(cfg.baseModel()));
        ServingSide side = new ServingSide(pool, api, h.host());
        try {
            side.binding = api.bind(system, h.host(), h.port()).toCompletableFuture().get(30, TimeUnit.SECONDS);
            side.warm = pool.warmUp();
            return side;
        } catch (Exception | Error e) {
            side.close();
            throw e;
        }
    }

    ServingPool pool() {
        return pool;
    }

    int port() {
        return binding.localAddress().getPort();
    }

    String url() {
        return "http://" + host + ":" + port();
    }

    CompletableFuture<Void> warm() {
        return warm;
    }

    /** Serves {@code version} as its domain's alias from the next request on (requests running finish on the old one). */
    void swap(AdapterVersion version) {
        try {
            pool.swap(version);
        } catch (RuntimeException e) {
            log.error("serving could not switch to {}: {}", version, e.toString());
        }
    }

    /** Stops accepting, lets requests in flight finish (10 s at most), then frees the pool. */
    @Override
    public void close() {
        if (binding != null) {
            try {
                binding.terminate(Duration.ofSeconds(10)).toCompletableFuture().get(15, TimeUnit.SECONDS);
            } catch (Exception e) {
                log.warn("HTTP unbind: {}", e.toString());
            }
        }
        MoraJob.quietly(api);
        MoraJob.quietly(pool);
    }
}
