package dev.morastream.actors.serving;

import dev.morastream.models.generate.GenerationResult;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.IntSupplier;

/**
 * Serving meters, one name per phase, tagged with {@code domain} ({@code base} for the base model)
 * and {@code adapter_version}. In Prometheus: {@code mora_serving_requests_total{outcome}},
 * {@code mora_serving_time_to_first_token_seconds}, {@code mora_serving_time_per_output_token_seconds},
 * {@code mora_serving_request_latency_seconds} (end to end, queue included), {@code
 * mora_serving_tokens_total{kind}}, {@code mora_serving_queue_depth}, {@code mora_serving_running},
 * {@code mora_serving_adapters_loaded}, {@code mora_serving_swap_seconds}.
 */
final class ServingMetrics {
    static final String BASE_DOMAIN = "base";
    private static final Duration[] LATENCY_BUCKETS = buckets(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30);
    private static final Duration[] TOKEN_BUCKETS = buckets(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1);

    private final MeterRegistry registry;

    ServingMetrics(MeterRegistry registry, IntSupplier queueDepth, IntSupplier running, IntSupplier loadedAdapters) {
        this.registry = registry;
        // strong references: the suppliers are lambdas nothing else holds, and a weakly held one is
        // collected by the first GC, after which the gauge reads NaN
        Gauge.builder("mora.serving.queue.depth", queueDepth, IntSupplier::getAsInt).strongReference(true)
                .description("Requests waiting for a serving actor").register(registry);
        Gauge.builder("mora.serving.running", running, IntSupplier::getAsInt).strongReference(true)
                .description("Requests being generated now").register(registry);
        Gauge.builder("mora.serving.adapters.loaded", loadedAdapters, IntSupplier::getAsInt).strongReference(true)
                .description("Adapter versions held in memory").register(registry);
    }

    void completed(String domain, String version, GenerationResult r, long totalNanos) {
        requests(domain, version, "ok").increment();
        timer("mora.serving.time.to.first.token", "From the start of generation to the first sampled token", domain, version, LATENCY_BUCKETS)
                .record(r.timeToFirstTokenNanos(), TimeUnit.NANOSECONDS);
        int n = r.completionTokens();
        if (n > 1) {
            timer("mora.serving.time.per.output.token", "Mean time between output tokens after the first", domain, version, TOKEN_BUCKETS)
                    .record((r.totalNanos() - r.timeToFirstTokenNanos()) / (n - 1), TimeUnit.NANOSECONDS);
        }
        timer("mora.serving.request.latency", "End-to-end request latency, queue included", domain, version, LATENCY_BUCKETS)
                .record(totalNanos, TimeUnit.NANOSECONDS);
        tokens(domain, version, "prompt").increment(r.promptTokens());
        tokens(domain, version, "completion").increment(n);
    }

    void failed(String domain, String version) {
        requests(domain, version, "error").increment();
    }

    /** The client went away or the request timed out: generation stopped early. */
    void cancelled(String domain, String version) {
        requests(domain, version, "cancelled").increment();
    }

    void rejected(String domain) {
        requests(domain, "none", "rejected").increment();
    }

    void swapped(String domain, long nanos) {
        Timer.builder("mora.serving.swap").description("Time to load and switch to a new adapter version")
                .tag("domain", domain).register(registry).record(nanos, TimeUnit.NANOSECONDS);
    }

    private Counter requests(String domain, String version, String outcome) {
        return Counter.builder("mora.serving.requests").description("Serving requests by outcome (ok, error, cancelled, rejected)")
                .tag("domain", domain).tag("adapter_version", version).tag("outcome", outcome).register(registry);
    }

    private Counter tokens(String domain, String version, String kind) {
        return Counter.builder("mora.serving.tokens").description("Prompt and completion tokens served")
                .tag("domain", domain).tag("adapter_version", version).tag("kind", kind).register(registry);
    }

    private Timer timer(String name, String help, String domain, String version, Duration[] slos) {
        return Timer.builder(name).description(help).tag("domain", domain).tag("adapter_version", version)
                .serviceLevelObjectives(slos).register(registry);
    }

    private static Duration[] buckets(double... seconds) {
        Duration[] d = new Duration[seconds.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = Duration.ofNanos((long) (seconds[i] * 1e9));
        }
        return d;
    }
}
