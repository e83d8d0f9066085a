package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.actors.registry.RegistryReplica;
import dev.morastream.actors.serving.ServingPool;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A serving replica following the cluster's decisions: reads the compacted promotions topic from
 * its beginning (so a replica that starts serves the current alias of every domain at once), and
 * for each promotion of a domain it does not decide itself fetches the version from the state store
 * into its local registry, points the local alias at it, warms it and swaps the pool to it —
 * requests running finish on the old version, none fails. A version not (yet) in the store is
 * retried with backoff (at most 5 s apart); a record that is not a promotion is logged and skipped.
 */
public final class PromotionFollower implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(PromotionFollower.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration FETCH_WAIT = Duration.ofMillis(200); // the loop must not stall on one domain

    private final Map<String, Object> clientProps;
    private final String topic;
    private final RegistryReplica replica;
    private final AdapterRegistry local;
    private final ServingPool pool;
    private final Predicate<String> follows;
    private final Consumer<String> say;
    private final MeterRegistry meters;
    private final Map<String, Pending> pending = new LinkedHashMap<>(); // domain -> the newest promotion not served yet
    private final Thread thread;
    private volatile KafkaConsumer<String, String> consumer;
    private volatile boolean closed;
    private final Instant started = Instant.now();

    private record Pending(AdapterVersion version, Instant decided, int attempts, long nextTry) {}

    /**
     * @param clientProps Kafka client properties, bootstrap servers included
     * @param local the registry the pool serves from, which this follower adds fetched versions to
     * @param follows whether this node follows a domain (not when it decides it itself)
     * @param say where a swap is reported (the console)
     */
    public PromotionFollower(Map<String, Object> clientProps, String topic, RegistryReplica replica, AdapterRegistry local, ServingPool pool,
            Predicate<String> follows, Consumer<String> say, MeterRegistry meters) {
        this.clientProps = clientProps;
        this.topic = topic;
        this.replica = replica;
        this.local = local;
        this.pool = pool;
        this.follows = follows;
        this.say = say;
        this.meters = meters;
        this.thread = new Thread(this::run, "mora-follow");
        this.thread.setDaemon(true);
    }

    public PromotionFollower start() {
        thread.start();
        return this;
    }

    private void run() {
        Map<String, Object> p = new HashMap<>(clientProps);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "morastream-follow");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            consumer = c;
            if (closed) {
                return;
            }
            List<TopicPartition> parts = awaitPartitions(c);
            c.assign(parts);
            c.seekToBeginning(parts);
            while (!closed) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    onRecord(r);
                }
                serveDue();
            }
        } catch (WakeupException stopping) {
            // close()
        } catch (RuntimeException e) {
            log.error("following {} stopped: {}; this replica serves what it has until restarted", topic, e.toString());
        }
    }

    private List<TopicPartition> awaitPartitions(KafkaConsumer<String, String> c) {
        while (!closed) {
            var infos = c.partitionsFor(topic, Duration.ofSeconds(10));
            if (infos != null && !infos.isEmpty()) {
                return infos.stream().map(i -> new TopicPartition(i.topic(), i.partition())).toList();
            }
            log.warn("promotions topic {} not there yet; waiting", topic);
        }
        throw new WakeupException();
    }

    private void onRecord(ConsumerRecord<String, String> r) {
        if (r.value() == null) {
            return; // a tombstone
        }
        try {
            JsonNode n = JSON.readTree(r.value());
            AdapterVersion v = AdapterVersion.parse(n.path("version").asText(""));
            if (!follows.test(v.domain())) {
                return;
            }
            Instant decided = n.hasNonNull("time") ? Instant.parse(n.get("time").asText()) : Instant.ofEpochMilli(r.timestamp());
            pending.put(v.domain(), new Pending(v, decided, 0, 0));
        } catch (Exception bad) {
            log.error("promotions topic {}: skipping record at {}-{} (not a promotion: {}): {}", topic, r.partition(), r.offset(),
                    bad.getMessage(), r.value().length() > 200 ? r.value().substring(0, 200) + "…" : r.value());
            Counter.builder("mora.follow.skipped").description("Records of the promotions topic that are not promotions")
                    .register(meters).increment();
        }
    }

    /** Serves each domain's newest pending promotion whose time to (re)try has come. */
    private void serveDue() {
        long now = System.nanoTime();
        for (Pending next : List.copyOf(pending.values())) {
            Pending p = next;
            if (p.nextTry() > now || closed) {
                continue;
            }
            String domain = p.version().domain();
            // the state store's alias (written by the deciding node's registry before it publishes the
            // promotion) is the truth; a record that disagrees (a forged or stale one) is not followed
            Optional<AdapterVersion> truth = replica.aliased(domain);
            if (truth.isPresent() && !truth.get().equals(p.version())) {
                if (p.attempts() < 4) {
                    pending.put(domain, new Pending(p.version(), p.decided(), p.attempts() + 1, now + 250_000_000L * (p.attempts() + 1)));
                    continue; // this node's view of the store may lag the topic by a moment
                }
                log.warn("following: the promotions topic says {} but the state store's alias of {} is {}: following the store",
                        p.version(), domain, truth.get());
                Counter.builder("mora.follow.disagreements").description("Promotion records that the state store's alias contradicts")
                        .register(meters).increment();
                p = new Pending(truth.get(), p.decided(), 0, 0);
                pending.put(domain, p);
            }
            if (pool.serving(domain).filter(p.version()::equals).isPresent()) {
                pending.remove(domain);
                continue;
            }
            try {
                Optional<AdapterRegistry.Entry> e = replica.fetch(local, p.version(), FETCH_WAIT);
                if (e.isEmpty()) {
                    throw new IllegalStateException(p.version() + " is not in the state store yet");
                }
                local.setAlias(p.version());
                pool.swap(p.version());
                pending.remove(domain);
                Duration lag = Duration.between(p.decided(), Instant.now());
                if (p.decided().isBefore(started)) {
                    // decided before this node started: serving it at once is the point, not a lag
                    say.accept("following: now serving " + p.version() + " as model '" + domain + "' (its alias since " + p.decided() + ")");
                } else {
                    Timer.builder("mora.follow.lag").description("From a promotion on another node to serving it here")
                            .tag("domain", domain).register(meters).record(Math.max(0, lag.toNanos()), TimeUnit.NANOSECONDS);
                    say.accept(String.format(java.util.Locale.ROOT, "following: now serving %s as model '%s' (%.1f s after the decision)",
                            p.version(), domain, lag.toMillis() / 1e3));
                }
            } catch (Exception ex) {
                int attempts = p.attempts() + 1;
                long delayMs = Math.min(5_000L, 250L << Math.min(5, attempts - 1)); // a late version is served within ~5 s
                log.warn("following: cannot serve {} yet (attempt {}: {}); retrying in {} ms", p.version(), attempts, ex.getMessage(), delayMs);
                pending.put(domain, new Pending(p.version(), p.decided(), attempts, System.nanoTime() + delayMs * 1_000_000L));
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        KafkaConsumer<String, String> c = consumer;
        if (c != null) {
            c.wakeup();
        }
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
