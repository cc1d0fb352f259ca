PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE channels (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	title VARCHAR(200) NOT NULL, 
	description VARCHAR(2000) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO channels VALUES(1,'general','General','Anything and everything.');
INSERT INTO channels VALUES(2,'announcements','Announcements','News from the company.');
CREATE TABLE posts (
	id INTEGER NOT NULL, 
	channel_id INTEGER NOT NULL, 
	author VARCHAR(200) NOT NULL, 
	body VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	edited_at DATETIME, 
	pinned BOOLEAN NOT NULL, 
	deleted BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(channel_id) REFERENCES channels (id)
);
INSERT INTO posts VALUES(1,1,'ada','first post, edited','2026-11-29 06:03:53.537243','2026-11-29 06:03:53.544285',0,0);
INSERT INTO posts VALUES(2,2,'grace','Office closed **Friday**','2026-11-29 06:03:53.541027',NULL,1,0);
INSERT INTO posts VALUES(3,1,'ada','','2026-11-29 06:03:53.546386',NULL,0,1);
CREATE TABLE events (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	kind VARCHAR(32) NOT NULL, 
	channel_id INTEGER NOT NULL, 
	post_id INTEGER, 
	created_at DATETIME NOT NULL, 
	FOREIGN KEY(channel_id) REFERENCES channels (id), 
	FOREIGN KEY(post_id) REFERENCES posts (id)
);
INSERT INTO events VALUES(1,'post-created',1,1,'2026-11-29 06:03:53.538797');
INSERT INTO events VALUES(2,'post-created',2,2,'2026-11-29 06:03:53.541411');
INSERT INTO events VALUES(3,'post-updated',1,1,'2026-11-29 06:03:53.544300');
INSERT INTO events VALUES(4,'post-created',1,3,'2026-11-29 06:03:53.546765');
INSERT INTO events VALUES(5,'post-deleted',1,3,'2026-11-29 06:03:53.548105');
INSERT INTO events VALUES(6,'post-pinned',2,2,'2026-11-29 06:03:53.549861');
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('events',6);
CREATE INDEX ix_posts_channel_id ON posts (channel_id);
CREATE INDEX ix_events_channel_id ON events (channel_id);
COMMIT;
