// In-memory fakes of every ops table of ota/core.h, for stepping the core in
// unit tests: a store with crash semantics (only save() is durable), a
// scripted server, a boot env, a service, a clock and the device's disks.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ota/core.h"

struct FakeWorld {
    FakeWorld();

    // ---- store
    std::optional<ota_journal> journal;
    std::deque<std::pair<int64_t, ota_report>> outbox;
    std::vector<ota_report> all_reports; // every report ever queued
    std::vector<ota_history> history;
    std::map<std::string, std::string> kv;
    int64_t next_id = 1;
    int save_fail = 0; // errno to fail save() with, 0 = none
    std::vector<ota_state> saved_states;

    // ---- server / transport
    std::string offer_json; // check-in answer; "" = {"update": null}
    std::string payload;    // bytes served at payload_url
    std::string payload_url = "http://srv/payload";
    std::string etag = "\"e1\"";
    bool server_down = false; // every request: -ECONNREFUSED
    long report_status = 200; // answer to status reports
    std::vector<ota_report> delivered;
    long health_status = 200;
    int health_starting = 0;   // the first N health probes answer 503 (a service still starting)
    int64_t cut_after = -1;    // next download: cut after this many body bytes (one-shot)
    bool ignore_range = false; // answer 200 to Range requests
    std::string content_range_override;     // send this Content-Range on 206
    long download_status = 0;               // answer this status instead of the payload (one-shot)
    std::vector<uint64_t> download_offsets; // offsets asked for
    std::vector<std::string> download_bearers; // each download's bearer ("" = none)
    std::vector<std::string> requests;         // "METHOD URL"
    std::vector<std::string> checkins;         // check-in request bodies
    std::vector<std::string> bearers;          // each request's bearer ("" = none)
    // Answers a request before the rest (GitHub source tests): true when it
    // filled status and headers of *ret and the body.
    std::function<bool(const std::string &url, ota_http_resp *ret, std::string &body)> answer;

    // ---- boot env
    std::map<std::string, std::string> env;
    bool env_corrupt = false;

    // ---- service
    bool active = true;
    bool restart_fails = false;
    int restarts = 0;
    int reboots = 0;
    bool crash_after_restart = false; // service goes inactive right after restart

    // ---- clock
    int64_t mono = 1000;
    int64_t wall = 1795000000000;

    // ---- disks
    std::string dl; // the download file
    bool dl_exists = false;
    uint64_t dl_durable = 0;                               // bytes fsynced
    std::map<int, std::string> slot_version{{0, "1.0.0"}}; // app slot -> VERSION
    int current = 0;                                       // app `current`
    int booted = 0;                                        // rootfs slot running
    bool booted_known = true;
    int install_error = 0;                   // errno slot_install fails with
    std::vector<int> slots_written;          // slots slot_install wrote
    std::map<int, std::string> rootfs_image; // slot -> image bytes
    uint64_t dl_free = 1ull << 40, slot_room = 1ull << 40;

    // Power cut: lose what was not made durable (download bytes past the last
    // dl_sync). The store is durable by construction.
    void power_cut();

    ota_agent_ops ops();
};

// A key pair in a temp dir, and signing of manifest text.
struct TestKeys {
    TestKeys();
    ~TestKeys();
    std::string dir, priv, pub, pub_pem;
    std::string sign(const std::string &manifest) const; // base64
};

// A manifest for payload, as ota-pack would write it. A rollback order is
// for devices running rollback_from and expires a day after its creation
// (the fake wall clock starts at it).
std::string make_manifest(const std::string &version, const std::string &kind,
                          const std::string &payload, const std::string &device_type = "rpi3b",
                          bool rollback = false, const std::string &format = "",
                          const std::string &rollback_from = "3.0.0");

// The check-in answer offering manifest.
std::string make_offer(const std::string &update_id, const std::string &manifest,
                       const std::string &sig, const std::string &url);
