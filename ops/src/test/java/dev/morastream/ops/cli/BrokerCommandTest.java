package dev.morastream.ops.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code mora broker} as a child JVM: it prints its address, a record goes through it, SIGTERM stops
 * it with exit 0, and started again on the same data directory it still has the topic and record.
 */
class BrokerCommandTest {
    static final Pattern READY = Pattern.compile("broker ready: bootstrap (127\\.0\\.0\\.1:(\\d+)) \\(data: (.+)\\)");

    @TempDir
    Path tmp;
    final List<Process> processes = new ArrayList<>();

    @AfterEach
    void cleanup() {
        processes.forEach(Process::destroyForcibly);
    }

    @Test
    void servesOnThePrintedAddressStopsOnSigtermAndKeepsItsDataOnRestart() throws Exception {
        Path data = tmp.resolve("broker");
        int port = freePort();
        Broker b1 = start(data, port, "run1");
        assertEquals("127.0.0.1:" + port, b1.bootstrap());
        assertEquals("127.0.0.1:" + port, Files.readString(data.resolve("bootstrap.servers")).trim());
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, b1.bootstrap()))) {
            admin.createTopics(List.of(new NewTopic("t", 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, b1.bootstrap(),
                ProducerConfig.ACKS_CONFIG, "all"), new StringSerializer(), new StringSerializer())) {
            p.send(new ProducerRecord<>("t", "k", "hello")).get(30, TimeUnit.SECONDS);
        }
        assertEquals(List.of("hello"), consume(b1.bootstrap()));
        b1.process().destroy(); // SIGTERM
        assertTrue(b1.process().waitFor(60, TimeUnit.SECONDS), "broker did not stop on SIGTERM");
        assertEquals(0, b1.process().exitValue(), read(b1.out()));
        assertTrue(read(b1.out()).contains("mora broker: stopped"), read(b1.out()));

        // same data directory, any port: the topic and its record are still there
        Broker b2 = start(data, 0, "run2");
        assertEquals(List.of("hello"), consume(b2.bootstrap()));
        b2.process().destroy();
        assertTrue(b2.process().waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, b2.process().exitValue(), read(b2.out()));
    }

    @Test
    void aTakenPortIsSaidToBeTaken() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            String[] r = CliTest.run("broker", "--data-dir", tmp.resolve("b").toString(), "--port", String.valueOf(s.getLocalPort()));
            assertEquals("1", r[0], r[2]);
            assertTrue(r[2].contains("port " + s.getLocalPort() + " on 127.0.0.1 is taken"), r[2]);
        }
    }

    record Broker(Process process, String bootstrap, Path out) {}

    Broker start(Path data, int port, String name) throws Exception {
        Path out = tmp.resolve(name + ".out");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-Xmx512m", "-cp", System.getProperty("java.class.path"),
                "dev.morastream.ops.cli.MoraCli", "broker", "--data-dir", data.toString(), "--port", String.valueOf(port))
                .redirectErrorStream(true).redirectOutput(out.toFile()).start();
        processes.add(p);
        String[] bootstrap = {null};
        await(name + " ready", Duration.ofSeconds(90), () -> {
            if (!p.isAlive()) {
                throw new AssertionError(name + " exited " + p.exitValue() + ":\n" + read(out));
            }
            Matcher m = READY.matcher(read(out));
            if (m.find()) {
                bootstrap[0] = m.group(1);
                assertEquals(data.toAbsolutePath().normalize().toString(), m.group(3));
                return true;
            }
            return false;
        });
        return new Broker(p, bootstrap[0], out);
    }

    static List<String> consume(String bootstrap) throws Exception {
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(Map.of(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ConsumerConfig.GROUP_ID_CONFIG, "check-" + System.nanoTime(), ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest"),
                new StringDeserializer(), new StringDeserializer())) {
            c.subscribe(List.of("t"));
            await("a record", Duration.ofSeconds(30), () -> {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    values.add(r.value());
                }
                return !values.isEmpty();
            });
        }
        return values;
    }

    static void await(String what, Duration timeout, BooleanSupplier ok) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!ok.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what);
            }
            Thread.sleep(100);
        }
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static String read(Path f) {
        try {
            return Files.exists(f) ? Files.readString(f, StandardCharsets.UTF_8) : "";
        } catch (java.io.IOException e) {
            return "";
        }
    }
}
